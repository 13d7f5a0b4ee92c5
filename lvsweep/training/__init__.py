"""Training: a lean Lightning Trainer for small full-batch models, and the callbacks that record
loss and alignment histories."""
