# ConvNeXt-T, EfficientTrain++ at E=100 (3x fewer FLOPs than 300 epochs).
_base_ = ['./convnext-tiny_etpp-e200_32xb128_in1k.py']

budget = 100  # E, full-size-equivalent epochs: 3x fewer FLOPs than 300
train_cfg = dict(budget=budget)
# drop_path scaled by E/200 as in the official recipe
model = dict(backbone=dict(drop_path_rate=0.1 * budget / 200))
