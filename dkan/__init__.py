"""dkan-sweep: DKAN few-shot defect detection (Sun et al., arXiv 2209.00519) on torchvision."""

__version__ = "0.1.0"
