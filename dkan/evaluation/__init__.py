"""AP at IoU 0.5 with pycocotools, per class and over base/novel/all, aggregated over seeds."""
