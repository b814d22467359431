"""EfficientTrain++ schedules as data: presets, budgets, replay plans."""
import pytest

from mmet.curriculum import (ETPP_BANDWIDTHS, ETPP_REPLAY, PRESETS,
                             Curriculum, CurriculumError, budget_for_speedup)

FAMILIES = {
    'resnet': [96] * 2 + [160] * 4 + [224] * 4,
    'swin': [96] * 2 + [160] * 4 + [224] * 4,
    'cswin': [96] * 2 + [160] * 4 + [224] * 4,
    'deit': [96] * 2 + [160] * 4 + [192] * 2 + [224] * 2,
    'convnext': [160] * 6 + [224] * 4,
}


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_presets_are_ten_equal_compute_stages(family):
    c = Curriculum.build('efficienttrain++', family=family)
    assert c == Curriculum.build(f'efficienttrain++{family}')
    assert [round(s.bandwidth * 224) for s in c.stages] == FAMILIES[family]
    assert [s.magnitude for s in c.stages] == list(range(10))
    # equal compute: epoch share x cost per epoch is the same in each stage
    compute = [s.share * s.bandwidth**2 for s in c.stages]
    assert compute == pytest.approx([compute[0]] * 10)
    assert sum(s.share for s in c.stages) == pytest.approx(1)


def test_family_is_required_and_checked():
    with pytest.raises(CurriculumError, match='depends on the model family'
                       ) as e:
        Curriculum.build('efficienttrain++')
    assert all(f in str(e.value) for f in ETPP_BANDWIDTHS)
    with pytest.raises(CurriculumError, match='Unknown model family'):
        Curriculum.build('efficienttrain++', family='vgg')
    with pytest.raises(CurriculumError, match='only applies'):
        Curriculum.build('efficienttrain', family='resnet')
    with pytest.raises(CurriculumError, match='contradicts'):
        Curriculum.build('efficienttrain++deit', family='resnet')
    # unknown names still list every preset, the ET++ ones included
    with pytest.raises(CurriculumError, match='Valid presets') as e:
        Curriculum.build('efficienttrain+++')
    assert all(name in str(e.value) for name in PRESETS)
    assert 'efficienttrain++resnet' in PRESETS


def test_epochs_for_a_budget():
    c = Curriculum.build('efficienttrain++resnet')
    # a stage at B runs (E/10)(224/B)^2 real epochs
    exact = 20 * (2 * (224 / 96)**2 + 4 * (224 / 160)**2 + 4)
    assert c.epochs_for_budget(200) == pytest.approx(exact)  # 454.6
    plan = c.plan(200)
    assert plan.max_epochs == 455
    assert plan.epochs() == [109, 109, 39, 39, 40, 39, 20, 20, 20, 20]
    assert plan.compute_epochs(224) == pytest.approx(200, rel=2e-3)
    assert plan.speedup(300, 224) == pytest.approx(1.5, rel=2e-3)
    assert c.plan(100).max_epochs == 227
    assert c.plan(100).speedup(300, 224) == pytest.approx(3, rel=3e-3)
    # the hook follows the plan's epoch shares
    assert plan.curriculum.boundaries(455)[1:3] == [109, 218]
    convnext = Curriculum.build('efficienttrain++convnext').plan(200)
    assert convnext.epochs() == [39, 39, 40, 39, 39, 39, 20, 20, 20, 20]
    with pytest.raises(CurriculumError, match='positive number'):
        c.plan(0)


def test_budget_for_speedup_against_300_epochs():
    assert [budget_for_speedup(s) for s in (1.5, 2, 3)] == [200, 150, 100]
    assert budget_for_speedup(1.5, baseline_epochs=10) == pytest.approx(20 / 3)
    with pytest.raises(CurriculumError):
        budget_for_speedup(0)


def test_replay_plan_keeps_compute_and_loads_less():
    c = Curriculum.build('efficienttrain++resnet')
    plain, replay = c.plan(200), c.plan(200, ETPP_REPLAY['times'])
    # R-fold fewer passes over the data, each of R-fold more steps
    assert replay.epochs() == [27, 27, 20, 20, 19, 20, 20, 20, 20, 20]
    assert replay.compute_epochs(224) == pytest.approx(
        plain.compute_epochs(224), rel=5e-3)
    rows = replay.table(224)
    assert [r['replay'] for r in rows] == list(ETPP_REPLAY['times'])
    with pytest.raises(CurriculumError, match='one replay factor per stage'):
        c.plan(200, [2, 1])


def test_equal_compute_from_relative_bandwidths():
    c = Curriculum.equal_compute([0.5, 1.0], [2, 6])
    assert [s.share for s in c.stages] == pytest.approx([0.8, 0.2])
    plan = c.plan(2)
    assert (plan.max_epochs, plan.epochs()) == (5, [4, 1])
    with pytest.raises(CurriculumError, match='one magnitude per bandwidth'):
        Curriculum.equal_compute([0.5], [1, 2])
