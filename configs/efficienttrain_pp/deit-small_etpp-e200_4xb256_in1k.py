# DeiT-S, EfficientTrain++ at E=200 (paper: 81.0 top-1, 1.60x).
# the ET config has configs/_base_/efficienttrain_pp.py's names already
_base_ = ['../efficienttrain/deit-small_et_4xb256_in1k.py']

budget = 200  # E, full-size-equivalent epochs: 1.5x fewer FLOPs than 300
train_cfg = dict(
    _base_.etpp_loop, _delete_=True, family='deit', budget=budget)
# drop_path scaled by E/200 as in the official recipe
model = dict(backbone=dict(drop_path_rate=0.1 * budget / 200))
