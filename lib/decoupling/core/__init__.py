"""The machine-learning core: device, models, training loops, batched training, measures."""
