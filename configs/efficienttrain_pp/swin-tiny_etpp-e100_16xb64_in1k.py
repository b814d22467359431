# Swin-T, EfficientTrain++ at E=100 (paper, 3x: 80.9 top-1).
_base_ = ['./swin-tiny_etpp-e200_16xb64_in1k.py']

budget = 100  # E, full-size-equivalent epochs: 3x fewer FLOPs than 300
train_cfg = dict(budget=budget)
# drop_path scaled by E/200 as in the official recipe
model = dict(backbone=dict(drop_path_rate=0.2 * budget / 200))
