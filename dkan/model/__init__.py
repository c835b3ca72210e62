"""Detector on torchvision: builder, cosine (Incremental RCNN) box predictor, checkpoint surgery."""
