"""Stages are data: the built-in life cycle, stages added by plugins, and stage sets."""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence

import attrs
import pytest

import crmkit
from crmkit import Customer, PluginError, Stage, ValidationError
from crmkit.lifecycle_model import BUILTIN_STAGES, StageDef, StageSet


class ClubStages:
    @crmkit.hookimpl
    def crmkit_customer_stages(self) -> Iterable[StageDef]:
        return [StageDef("vip_club", "invited to the club")]


def test_the_builtin_stages_behave_as_the_enum_did() -> None:
    assert [s.value for s in Stage] == [s.name for s in BUILTIN_STAGES]
    assert len(Stage) == 8 and Stage[0] is Stage.LEAD and Stage["AT_RISK"] is Stage.AT_RISK
    assert Stage("lead") is Stage.LEAD and Stage.LEAD == "lead" and str(Stage.LEAD) == "lead"
    assert Stage.CHURNED.name == "CHURNED" and {Stage.LEAD: 1}["lead"] == 1
    assert pickle.loads(pickle.dumps(Stage.LOYAL)) is Stage.LOYAL
    assert isinstance(Stage, Sequence)  # so st.sampled_from(Stage) works as it did with the enum
    with pytest.raises(ValidationError) as err:
        Stage("happy")
    assert err.value.field == "stage" and "won_back" in err.value.message


def test_a_plugin_adds_customer_stages() -> None:
    with crmkit.connect("memory://", plugins=[ClubStages()]) as crm:
        assert crm.lifecycle.stages.names[-1] == "vip_club" and crm.lifecycle.stages["churned"].closed
        member = crm.customers.add(Customer(kind="person", name="Ana", stage="vip_club"))
        assert member.stage is Stage("vip_club")
        moved = crm.customers.update(attrs.evolve(member, stage="loyal"))
        (change,) = crm.stage_changes.find().items
        assert (change.from_stage, change.to_stage, moved.stage) == ("vip_club", "loyal", Stage.LOYAL)
    assert "vip_club" not in Stage  # iterating Stage stays the built-in life cycle in every process


def test_a_connection_without_the_plugin_refuses_its_stages() -> None:
    crmkit.connect("memory://", plugins=[ClubStages()]).close()
    with crmkit.connect("memory://") as crm:
        with pytest.raises(ValidationError) as err:
            crm.customers.add(Customer(kind="person", name="Ana", stage="vip_club"))
        assert err.value.field == "stage" and "won_back" in err.value.message
        rows = [Customer(kind="person", name="ok"), Customer(kind="person", name="no", stage="vip_club")]
        with pytest.raises(ValidationError) as err:
            crm.customers.add_many(rows)
        assert err.value.row == 1


def test_two_plugins_may_not_define_one_stage_differently() -> None:
    class Other:
        @crmkit.hookimpl
        def crmkit_customer_stages(self) -> Iterable[StageDef]:
            return [StageDef("vip_club", "something else")]

    with pytest.raises(PluginError, match="vip_club"):
        crmkit.connect("memory://", plugins=[ClubStages(), Other()])


def test_stage_sets_check_their_stages() -> None:
    pipeline = StageSet("deals", [StageDef("qualify"), StageDef("won", closed=True)])
    assert pipeline.names == ("qualify", "won") and "won" in pipeline and pipeline.check("stage", "qualify")
    with pytest.raises(ValidationError, match="not a stage of deals"):
        pipeline.check("stage", "lost")
    with pytest.raises(ValidationError, match="twice"):
        StageSet("deals", [StageDef("a"), StageDef("a")])
    with pytest.raises(ValidationError):
        StageDef("not a name")


def test_the_life_cycle_is_the_stage_set_its_changes_are_stored_under() -> None:
    with crmkit.connect("memory://") as crm:
        ada = crm.customers.add(crmkit.Customer(kind="person", name="Ada"))
        crm.lifecycle.move(ada.id, crmkit.Stage.PROSPECT)
        (change,) = crm.state_changes.history(ada)
        assert change.stage_set == crm.lifecycle.stages.key == "lifecycle"
