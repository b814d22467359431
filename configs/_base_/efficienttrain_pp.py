# EfficientTrain++ (TPAMI 2024) on top of an EfficientTrain ImageNet config.
#
# ET++ replaces ET's 5 stages over max_epochs by 10 stages of equal compute
# (m = 0..9) over a budget of E full-size-equivalent epochs. This file is
# configs/_base_/efficienttrain.py (same names, used the same way as a second
# base of an mmpretrain config); the configs/efficienttrain_pp/ configs
# inherit configs/efficienttrain/<model>.py, which has it already. A child
# config then sets:
#
#   budget = 200                     # E; 300 / E = the speedup vs 300 epochs
#   train_cfg = dict(_base_.etpp_loop, _delete_=True, family='resnet',
#                    budget=budget)
#   model = dict(backbone=dict(drop_path_rate=<rate at E=200> * budget / 200))
#
# - max_epochs is derived by the loop: a stage at B runs (E/10)(224/B)^2 real
#   epochs (ResNet-50 at E=200: 455 epochs, 1.50x fewer FLOPs than 300
#   full-size epochs). `python tools/analyze_curriculum.py CONFIG` shows it.
# - param_scheduler (warm-up, cosine, weight decay) is inherited unchanged:
#   the loop runs it on the compute clock, as a full-size run of E epochs,
#   so the 20 warm-up epochs are 20 epochs' worth of compute.
# - drop_path scales with E/200 as in the official _ET_pp_main_*.py.
# - Replay buffer (for loaders that cannot keep up at low B): add
#   replay='efficienttrain++' to train_cfg (R = 4,4,2,2,2,2,1,1,1,1; buffers
#   of 1920, 256, 0 loaded batches).
# - Low-pass: the inherited pipeline keeps the exact Fourier crop, which costs
#   about what Lanczos costs on the CPU (tools/benchmark_lowpass.py). For the
#   official ET++ Lanczos resize use
#   train_dataloader = dict(
#       dataset=dict(pipeline=_base_.etpp_lanczos_pipeline))
_base_ = ['./efficienttrain.py']
