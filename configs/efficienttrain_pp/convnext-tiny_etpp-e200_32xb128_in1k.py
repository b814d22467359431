# ConvNeXt-T, EfficientTrain++ at E=200 (paper: 82.2 top-1, 1.49x).
# the ET config has configs/_base_/efficienttrain_pp.py's names already
_base_ = ['../efficienttrain/convnext-tiny_et_32xb128_in1k.py']

budget = 200  # E, full-size-equivalent epochs: 1.5x fewer FLOPs than 300
train_cfg = dict(
    _base_.etpp_loop, _delete_=True, family='convnext', budget=budget)
# drop_path scaled by E/200 as in the official recipe
model = dict(backbone=dict(drop_path_rate=0.1 * budget / 200))
