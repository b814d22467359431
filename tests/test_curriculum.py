"""The pure schedule math: presets, epochs, compute, validation."""
import pytest

from mmet.curriculum import PRESETS, Curriculum, CurriculumError
from mmet.plan import TrainPlan
from mmet.sizes import at_bandwidth


def test_et_preset_matches_paper_at_300_epochs():
    et = Curriculum.build('efficienttrain')
    assert et.boundaries(300) == [0, 60, 120, 180, 240, 300]
    plan = TrainPlan(et, full_size=224, max_epochs=300)
    sizes = [plan.state(plan.stage_at(e, 0)).size
             for e in (0, 179, 180, 239, 240, 299)]
    assert sizes == [160, 160, 192, 192, 224, 224]
    mags = [plan.state(plan.stage_at(e, 0)).magnitude
            for e in (0, 60, 120, 180, 240)]
    assert mags == [1, 3, 5, 7, 9]
    # docs/method.md §2: 300 / (180 (160/224)^2 + 60 (192/224)^2 + 60) = 1.53x
    expected = 300 / (180 * (160 / 224)**2 + 60 * (192 / 224)**2 + 60)
    assert et.speedup() == pytest.approx(expected)
    assert et.speedup(300, 224) == pytest.approx(expected)
    assert round(expected, 2) == 1.53


@pytest.mark.parametrize('max_epochs', [1, 2, 3, 7, 12, 100, 450])
def test_boundaries_cover_training_and_end_full_size(max_epochs):
    et = Curriculum.build('et')
    edges = et.boundaries(max_epochs)
    assert edges[0] == 0 and edges[-1] == max_epochs
    assert edges == sorted(edges)
    assert sum(et.epochs(max_epochs)) == max_epochs
    assert et.epochs(max_epochs)[-1] >= 1
    plan = TrainPlan(et, full_size=224, max_epochs=max_epochs)
    assert plan.state(plan.stage_at(max_epochs - 1, 0)).size == 224
    # every epoch maps to the stage whose interval holds it
    for e in range(max_epochs):
        i = et.stage_index(e, max_epochs)
        assert edges[i] <= e < edges[i + 1]


def test_bandwidth_scales_to_small_images_even_pixels():
    et = Curriculum.build('et')
    assert [at_bandwidth(s.bandwidth, 28) for s in et.stages] == \
        [20, 20, 20, 24, 28]
    assert [at_bandwidth(s.bandwidth, 32) for s in et.stages] == \
        [22, 22, 22, 28, 32]
    assert at_bandwidth(160 / 224, (224, 320)) == (160, 228)
    assert at_bandwidth(1.0, 27) == 27  # full size is kept as is


def test_relative_compute_uses_trained_pixels_and_epochs():
    et = Curriculum.build('et')
    # 28 px: B = 20, 20, 20, 24, 28 over 10 epochs, two each
    expected = (6 * 20**2 + 2 * 24**2 + 2 * 28**2) / (10 * 28**2)
    assert et.relative_compute(10, 28) == pytest.approx(expected)
    rows = et.table(10, 28)
    assert [r['epochs'] for r in rows] == [2] * 5
    assert sum(r['compute'] for r in rows) == pytest.approx(expected)


def test_explicit_stage_list_roundtrips():
    spec = [dict(share=0.5, bandwidth=0.5, magnitude=0),
            dict(share=0.5, bandwidth=1.0, magnitude=9)]
    c = Curriculum.build(spec)
    assert c.to_list() == spec
    assert Curriculum(c.to_list()) == c
    assert c.speedup() == pytest.approx(1 / (0.5 * 0.25 + 0.5))


@pytest.mark.parametrize('stages, message', [
    ([], 'no stages'),
    ([dict(share=0.5, bandwidth=1.0, magnitude=9)], 'sum to 0.5, not 1'),
    ([dict(share=0.5, bandwidth=0, magnitude=1),
      dict(share=0.5, bandwidth=1.0, magnitude=9)], 'Stage 1 has bandwidth 0'),
    ([dict(share=0.5, bandwidth=1.2, magnitude=1),
      dict(share=0.5, bandwidth=1.0, magnitude=9)], 'must lie in (0, 1]'),
    ([dict(share=1.0, bandwidth=0.7, magnitude=9)], 'must train at full size'),
    ([dict(share=1.0, bandwidth=1.0, magnitude=11)], 'magnitude must lie in'),
    ([dict(share=1.0, bandwidth=1.0, magnitude=-1)], 'magnitude must lie in'),
    ([dict(share=0.0, bandwidth=0.5, magnitude=1),
      dict(share=1.0, bandwidth=1.0, magnitude=9)], 'Stage 1 has share 0'),
    ([dict(share=0.3, bandwidth=0.8, magnitude=1),
      dict(share=0.3, bandwidth=0.5, magnitude=1),
      dict(share=0.4, bandwidth=1.0, magnitude=9)],
     'falls from 0.8 in stage 1 to 0.5 in stage 2'),
    ([dict(share=1.0, bandwidth=1.0)], "lacks ['magnitude']"),
    ([dict(share=1.0, bandwidth=1.0, magnitude=9, size=3)], 'unknown keys'),
    ([(1.0, 1.0, 9)], 'Stage 1 is a tuple'),
])
def test_invalid_schedules_say_what_to_change(stages, message):
    with pytest.raises(CurriculumError) as err:
        Curriculum(stages)
    assert message in str(err.value)


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(CurriculumError, match='Valid presets') as err:
        Curriculum.build('efficientrain')
    for name in PRESETS:
        assert name in str(err.value)


def test_epoch_outside_training_is_refused():
    et = Curriculum.build('et')
    with pytest.raises(CurriculumError, match='outside training'):
        et.stage_index(10, 10)
    with pytest.raises(CurriculumError, match='positive int'):
        et.boundaries(0)


def test_a_bandwidth_below_the_floor_is_refused_by_the_plan():
    """Issue 22, item 3: 0.01 of 32 px would train on 2x2 inputs."""
    tiny = Curriculum([dict(share=0.5, bandwidth=0.01, magnitude=0),
                       dict(share=0.5, bandwidth=1.0, magnitude=0)])
    with pytest.raises(CurriculumError, match=(
            r'Stage 1 has bandwidth 0.01: B=2 px of the full size 32, below '
            r'the floor of 8 px.* Give bandwidths of at least 0.25 \(8 px\)')):
        TrainPlan(tiny, full_size=32, max_epochs=4)
    # at the floor it plans; the ET presets are far above it at 28 px
    TrainPlan(Curriculum([dict(share=0.5, bandwidth=0.25, magnitude=0),
                          dict(share=0.5, bandwidth=1.0, magnitude=0)]),
              full_size=32, max_epochs=4)
    TrainPlan(Curriculum.build('efficienttrain++', family='resnet'),
              full_size=28, budget=20)
