"""DKAN's two distillation losses (pure functions) and the teacher-student training step."""
