"""Data layer: readers (VOC folder, COCO JSON), class splits, few-shot sampling, datasets."""
