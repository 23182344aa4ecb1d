"""The reconciler's rules as pure functions: what a Namespace's or CRD's cascade may take,
when a pass holds an object (bounded 500s, a conflict with a controller, a Namespace that
came back), another instance's objects, and adopting an object kubectl apply made."""

from __future__ import annotations

from typing import Any

from gitops.diff import DiffItem, ObjectDiff, Op, Status, take_over
from gitops.projections.fold import ActualEntry, DesiredEntry
from gitops.reconcile import ReconcileSettings, make_plan
from gitops.reconcile.cascade import Contents, judge_cascade
from gitops.reconcile.holds import Holds

OWN = {"gitops.dev/instance": "default"}


def _obj(kind: str, name: str, ns: str = "shop", uid: str | None = None, labels: dict[str, str] | None = None,
         **meta: Any) -> tuple[str, str, dict[str, Any]]:
    group = "apps" if kind in ("Deployment", "ReplicaSet") else ""
    m = {"apiVersion": f"{group}/v1" if group else "v1", "kind": kind,
         "metadata": {"name": name, "namespace": ns, "uid": uid or f"uid-{kind}-{name}", "labels": labels or {},
                      **meta}}
    return group, kind, m


def _contents(*objs: tuple[str, str, dict[str, Any]], unlisted: dict[str, str] | None = None) -> Contents:
    out = Contents(unlisted=unlisted or {})
    for group, kind, m in objs:
        head = f"{kind}.{group}" if group else kind
        out.objects[f"{head}/{m['metadata']['namespace']}/{m['metadata']['name']}"] = (group, kind, m)
    return out


def test_a_namespace_of_nothing_but_this_instances_objects_and_their_dependents_may_go() -> None:
    web = _obj("Deployment", "web", labels=OWN)
    rs = _obj("ReplicaSet", "web-1", ownerReferences=[{"uid": web[2]["metadata"]["uid"]}])
    pod = _obj("Pod", "web-1-x", ownerReferences=[{"uid": rs[2]["metadata"]["uid"]}])
    svc = _obj("Service", "web", labels=OWN)
    sa_token = _obj("Secret", "default-token-abc", annotations={"kubernetes.io/service-account.name": "default"})
    sa_token[2]["type"] = "kubernetes.io/service-account-token"
    housekeeping = [_obj("ServiceAccount", "default"), _obj("ConfigMap", "kube-root-ca.crt"), sa_token,
                    _obj("Endpoints", "web"), ("events.k8s.io", "Event", _obj("Event", "e")[2])]
    contents = _contents(web, rs, pod, svc, *housekeeping)
    blocked, extra = judge_cascade("Namespace/shop", contents, instance="default", desired=set(),
                                   pruning={"Deployment.apps/shop/web"})
    assert blocked is None and extra == 1  # the Service: the log did not know it, the cascade deletes it


def test_a_namespace_holding_what_gitops_must_not_delete_is_held_naming_each() -> None:
    contents = _contents(
        _obj("ConfigMap", "by-hand"), _obj("ConfigMap", "theirs", labels={"gitops.dev/instance": "other"}),
        _obj("ConfigMap", "wanted", labels=OWN), _obj("ConfigMap", "off", labels=OWN,
                                                      annotations={"gitops.dev/reconcile": "disabled"}),
        _obj("Pod", "orphan-pod", ownerReferences=[{"uid": "uid-of-something-else"}]),
        unlisted={"Widget.example.com": "HTTP 403"})
    blocked, _ = judge_cascade("Namespace/shop", contents, instance="default", desired={"ConfigMap/shop/wanted"},
                               pruning=set())
    assert blocked is not None
    msg = blocked.message
    assert msg.startswith("prune-blocked: it holds what gitops must not delete: ")
    for part in ("ConfigMap/shop/by-hand (not made by gitops)", "ConfigMap/shop/theirs (owned by instance 'other')",
                 "ConfigMap/shop/wanted (still in Git)", "ConfigMap/shop/off (annotated gitops.dev/reconcile: "
                 "disabled)", "Pod/shop/orphan-pod"):
        assert part in msg
    assert "and 1 more" in msg  # six problems, five named


def test_the_plan_holds_a_blocked_namespace_and_counts_a_cascade_toward_the_guard() -> None:
    actual = {f"ConfigMap/a/c{i}": {"metadata": {"labels": OWN}} for i in range(4)}
    actual["Namespace/shop"] = {"metadata": {"labels": OWN}}
    diffs = [ObjectDiff("Namespace/shop", Status.ORPHAN)]
    blocked = make_plan(diffs, desired={}, actual=actual, instance="default", prune=True, mass_prune_ratio=0.5,
                        cascades={"Namespace/shop": _contents(_obj("ConfigMap", "by-hand"))})
    assert blocked.actions == [] and blocked.held is not None and "by-hand" in blocked.held
    assert [(a.key, a.reason) for a in blocked.skipped] == [("Namespace/shop", "PruneBlocked")]
    unknown = make_plan(diffs, desired={}, actual=actual, instance="default", prune=True, mass_prune_ratio=0.5)
    assert unknown.actions == [] and "not known" in (unknown.held or "")
    # 1 prune of 5 owned objects is under 50%, but the Namespace holds 5 more of ours: 6 of 10
    full = _contents(*(_obj("ConfigMap", f"x{i}", labels=OWN) for i in range(5)))
    guarded = make_plan(diffs, desired={}, actual=actual, instance="default", prune=True, mass_prune_ratio=0.5,
                        cascades={"Namespace/shop": full})
    assert guarded.actions == [] and "6 of 10" in (guarded.held or "")
    allowed = make_plan(diffs, desired={}, actual=actual, instance="default", prune=True, mass_prune_ratio=0.5,
                        cascades={"Namespace/shop": full}, allow_mass_prune=True)
    assert [a.key for a in allowed.actions] == ["Namespace/shop"] and allowed.cascaded == 5


def test_another_instances_object_is_a_shared_resource_error_unless_adopted() -> None:
    diffs = [ObjectDiff("ConfigMap/a/c", Status.OUT_OF_SYNC, (DiffItem(Op.CHANGED, "data.k", "1", "2"),))]
    live = {"ConfigMap/a/c": {"metadata": {"labels": {"gitops.dev/instance": "blue"}}}}
    plan = make_plan(diffs, desired={"ConfigMap/a/c": {}}, actual=live, instance="green", prune=False,
                     mass_prune_ratio=0.5)
    assert plan.actions == [] and plan.skipped[0].reason == "SharedResource" and plan.skipped[0].failed
    assert "instance 'blue'" in (plan.skipped[0].skipped or "")
    adopted = make_plan(diffs, desired={"ConfigMap/a/c": {}}, actual=live, instance="green", prune=False,
                        mass_prune_ratio=0.5, adopt_from=["blue"])
    assert [a.key for a in adopted.actions] == ["ConfigMap/a/c"]


def test_with_namespaces_set_nothing_outside_them_is_acted_on_and_each_is_an_error() -> None:
    diffs = [ObjectDiff(k, Status.MISSING, ()) for k in (
        "ConfigMap/shop/a", "ConfigMap/other/b", "Namespace/shop", "Namespace/other",
        "ClusterRole.rbac.authorization.k8s.io/reader")] + [
        ObjectDiff("ConfigMap/other/old", Status.ORPHAN, ())]
    live = {"ConfigMap/other/old": {"metadata": {"labels": {"gitops.dev/instance": "default"}}}}
    plan = make_plan(diffs, desired={d.key: {} for d in diffs[:5]}, actual=live, instance="default", prune=True,
                     mass_prune_ratio=1.0, namespaces=["shop"])
    assert sorted(a.key for a in plan.actions) == ["ClusterRole.rbac.authorization.k8s.io/reader",
                                                   "ConfigMap/shop/a", "Namespace/shop"]
    held = {a.key: a for a in plan.skipped}
    assert set(held) == {"ConfigMap/other/b", "Namespace/other", "ConfigMap/other/old"}
    assert all(a.reason == "OutOfScope" and a.failed for a in held.values())
    assert "namespace other is not one of the namespaces" in (held["ConfigMap/other/b"].skipped or "")
    everywhere = make_plan(diffs, desired={d.key: {} for d in diffs[:5]}, actual=live, instance="default",
                           prune=True, mass_prune_ratio=1.0)
    assert len(everywhere.actions) == 6 and not everywhere.skipped


def _entries(seq: int, actor: str | None, attribution: str, manager: str = "mode-controller"
             ) -> tuple[DesiredEntry, ActualEntry]:
    live = {"data": {"mode": "x"}, "metadata": {"managedFields": [
        {"manager": "gitops", "operation": "Apply", "fieldsV1": {"f:metadata": {"f:labels": {}}}},
        {"manager": manager, "operation": "Update", "fieldsV1": {"f:data": {"f:mode": {}}}}]}}
    return (DesiredEntry({}, 1, "c0ffee", None, "a.yaml", "git"),
            ActualEntry(live, seq, str(seq), actor, attribution, "cluster"))


def test_a_field_a_controller_sets_back_after_each_apply_is_a_conflict_until_git_or_the_field_changes() -> None:
    now = [0.0]
    holds = Holds(ReconcileSettings(loop_limit=3, loop_window=60), lambda: now[0])

    def drifted(value: str) -> ObjectDiff:
        return ObjectDiff("ConfigMap/a/c", Status.OUT_OF_SYNC, (DiffItem(Op.CHANGED, "data.mode", "git", value),))

    seq = 10
    for flip in range(1, 4):
        holds.succeeded("ConfigMap/a/c", op="update", fields=("data.mode",))  # the pass applied it
        now[0] += 1
        seq += 1
        want, live = _entries(seq, "admin", "audit")  # and the controller set it back (as admin)
        hold = holds.hold(drifted("controller"), want, live, (1, seq, None))
        if flip < 3:
            assert hold is None, flip
    assert hold is not None and hold.reason == "Conflict" and hold.failed
    assert "data.mode set back by mode-controller (the change was made as admin)" in hold.why
    assert "3 times" in hold.why
    again = holds.hold(drifted("controller"), want, live, (1, seq, None))
    assert again is not None and again.reason is None  # recorded once; still held
    other = holds.hold(drifted("someone-else"), want, live, (1, seq + 1, None))
    assert other is None  # the contested field changed: try again


def test_an_apply_healing_a_human_edit_now_and_then_is_no_conflict() -> None:
    now = [0.0]
    holds = Holds(ReconcileSettings(loop_limit=2, loop_window=60), lambda: now[0])
    d = ObjectDiff("ConfigMap/a/c", Status.OUT_OF_SYNC, (DiffItem(Op.CHANGED, "data.mode", "git", "alice"),))
    for seq in (11, 12, 13):
        holds.succeeded("ConfigMap/a/c", op="update", fields=("data.mode",))
        now[0] += 600  # an hour apart: outside the window
        want, live = _entries(seq, "alice", "audit", manager="kubectl-edit")
        assert holds.hold(d, want, live, (1, seq, None)) is None


def test_an_http_500_is_retried_a_bounded_number_of_times_then_terminal() -> None:
    now = [0.0]
    holds = Holds(ReconcileSettings(retry_limit=3, retry_initial=1, retry_max=1), lambda: now[0])
    d = ObjectDiff("Service/a/s", Status.MISSING)
    want = DesiredEntry({}, 1, "c0ffee", None, "a.yaml", "git")
    for attempt in (1, 2, 3):
        terminal, message = holds.failed("Service/a/s", (1, None, 5), terminal=False, code=500, message="boom")
        assert terminal == (attempt == 3)
        now[0] += 5
    assert message == "gave up after 3 tries: boom"
    hold = holds.hold(d, want, None, (1, None, 5))
    assert hold is not None and hold.why.startswith("waiting for the desired or live object to change")
    assert holds.hold(d, want, None, (1, None, 6)) is None  # its Namespace changed (came back): retried at once
    for _ in range(10):  # a server that is busy is tried for as long as it takes
        terminal, _ = holds.failed("Service/a/t", (1, None, 5), terminal=False, code=503, message="busy")
        assert not terminal


def test_adopting_an_object_kubectl_apply_made_takes_all_its_fields_but_the_last_applied_annotation() -> None:
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "a"},
                            "data": {"a": "1"}}
    csa = {"f:data": {"f:a": {}, "f:old": {}},
           "f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}}}
    live = {**body, "metadata": {**body["metadata"], "managedFields": [
        {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1", "fieldsV1": csa},
        {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:data": {"f:c": {}}}}]}}
    assert take_over(body, live) is None  # not ours yet, and not adopting: nothing to hand over
    fields = take_over(body, live, adopt=True, ignore_managers=["kube-controller-manager"])
    assert fields is not None
    by = {e["manager"]: e for e in fields}
    assert by["gitops"]["operation"] == "Apply" and by["gitops"]["fieldsV1"] == {"f:data": {"f:a": {}, "f:old": {}}}
    assert by["kubectl-client-side-apply"]["fieldsV1"] == {
        "f:metadata": {"f:annotations": {"f:kubectl.kubernetes.io/last-applied-configuration": {}}}}
    assert by["kube-controller-manager"]["fieldsV1"] == {"f:data": {"f:c": {}}}
    gone = take_over(body, live, adopt=True, keep_last_applied=False)
    assert gone is not None and "kubectl-client-side-apply" not in {e["manager"] for e in gone}


def test_what_an_update_refused_for_an_immutable_field_may_recreate() -> None:
    from gitops.diff import DiffSettings
    from gitops.reconcile.apply import Applier

    def why(key: str, annotated: bool = False, **settings: Any) -> str | None:
        manifest = {"metadata": {"annotations": {"gitops.dev/force": "enabled"}} if annotated else {}}
        applier = Applier(None, ReconcileSettings(**settings), DiffSettings())  # type: ignore[arg-type]  # no request
        return applier.why_not_recreated(key, manifest)

    assert why("Job.batch/shop/migrate", annotated=True) is None
    assert why("Job.batch/shop/migrate", recreate_immutable=True) is None
    assert "annotate it gitops.dev/force: enabled" in (why("Job.batch/shop/migrate") or "")
    assert "its data may go" in (why("PersistentVolumeClaim/shop/data", recreate_immutable=True) or "")
    assert why("PersistentVolumeClaim/shop/data", annotated=True) is None  # asked for, object by object
    for cascading in ("Namespace/shop", "CustomResourceDefinition.apiextensions.k8s.io/widgets.example.com"):
        assert "deletes everything it holds" in (why(cascading, annotated=True, recreate_immutable=True) or "")


def test_the_servers_go_values_are_cut_to_their_type_and_nothing_else_is() -> None:
    from gitops.sources.cluster.api import ApiRefused, without_go_values

    dump = ('Job.batch "m" is invalid: spec.template: Invalid value: core.PodTemplateSpec{ObjectMeta:v1.ObjectMeta{'
            'Labels:map[string]string{"a":"}{"}}, Spec:core.PodSpec{Containers:[]core.Container{core.Container{'
            'Env:[]core.EnvVar{core.EnvVar{Name:"PASSWORD", Value:"hunter2\\"}"}}}}, Grace:(*int64)(0xc00b)}}: '
            'field is immutable; metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain')
    assert without_go_values(dump) == ('Job.batch "m" is invalid: spec.template: Invalid value: '
                                       'core.PodTemplateSpec{…}: field is immutable; metadata.name: Invalid value: '
                                       '"Bad_Name": a lowercase RFC 1123 subdomain')
    assert "hunter2" not in str(ApiRefused(422, "Invalid", dump))
    cut = "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"  # not whole: kept
    assert without_go_values(cut) == cut
    assert without_go_values("nothing to cut {here}") == "nothing to cut {here}"
