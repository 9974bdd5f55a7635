"""The testbed's plan: pure, no root."""

from __future__ import annotations

from pathlib import Path

import pytest

from mecfed.model.pricing import seeded_policies
from mecfed.testbed.pki import Pki
from mecfed.testbed.plan import (
    CONSUMER_POLICY,
    Params,
    Underlay,
    default_policies,
    default_warm_pool,
    make_plan,
)
from mecfed.wire.federator import policy_from_json, policy_to_json

SUBNET = "10.219.0.0/16"


def plan_for(n: int, tmp: Path = Path("/tmp/mfapp-plan"), **kw):
    return make_plan("mfapp", tmp, Underlay.of("mfapp-", SUBNET), Params.build(n, **kw))


def test_names_addresses_ports_paths() -> None:
    plan = plan_for(10)
    assert [s.system_id for s in plan.systems] == [f"mec-{i:02d}" for i in range(1, 11)]
    assert [s.role for s in plan.systems] == ["consumer"] * 8 + ["provider"] * 2
    s3 = plan.system("mec-03")
    assert (s3.namespace, s3.underlay_ip) == ("mfapp-s3", "10.219.0.13")
    assert (s3.mef_listen, s3.meo_listen) == ("10.219.0.13:50051", "10.219.0.13:50052")
    assert s3.system_name == "MEC system 03" and s3.system_provider == "operator-03"
    assert s3.config_path == Path("/tmp/mfapp-plan/systems/mec-03/config.json")
    # The TLS paths are the ones the testbed's CA issues into.
    assert s3.tls == Pki(plan.pki_dir).paths("mec-03")
    assert plan.chain_ws_url == "ws://10.219.0.1:50050"


def test_params_as_dict_is_the_saved_form() -> None:
    params = Params.build(3, backend="chain", block_time=2.0, seed=4)
    assert params.as_dict() == {
        "n": 3,
        "backend": "chain",
        "vim": "docker",
        "roles": ["consumer", "consumer", "provider"],
        "image": "mecfed/echo:1",
        "offer_policies": {},
        "seed": 4,
        "block_time": 2.0,
        "otlp_endpoint": "",
        "warm_pool": 4,
        "base_port": 50051,
    }
    # The block time only matters for the chain.
    assert Params.build(3, block_time=2.0).block_time is None
    with pytest.raises(ValueError, match="backend"):
        Params.build(2, backend="carrier-pigeon")
    with pytest.raises(ValueError, match="vim"):
        Params.build(2, vim="vmware")


def test_size_limits() -> None:
    small = Underlay.of("mfapp-", "10.219.0.0/28")  # 16 addresses: 4 systems
    with pytest.raises(ValueError, match="n must be within"):
        make_plan("mfapp", Path("/tmp"), small, Params.build(5))
    with pytest.raises(ValueError, match="alphanumeric"):
        make_plan("mf app", Path("/tmp"), small, Params.build(2))


def test_warm_pool_default() -> None:
    assert default_warm_pool(["consumer"] * 24 + ["provider"] * 6) == 8
    assert default_warm_pool(["consumer", "provider"]) == 2
    assert default_warm_pool(["provider"]) == 0


def test_default_offer_policies_are_the_seeded_tariffs() -> None:
    roles = ["consumer"] * 8 + ["provider"] * 2
    policies = default_policies(roles, seed=7)
    assert policies[:8] == [CONSUMER_POLICY] * 8
    expected = seeded_policies(2, 7, capacity_replicas=8)  # room for every consumer
    assert policies[8:] == [policy_to_json(p) for p in expected]
    assert [policy_from_json(p) for p in policies[8:]] == expected
    # Small testbeds still get a capacity of 4.
    assert default_policies(["consumer", "provider"], 0)[1]["capacityReplicas"] == 4


def test_direct_config() -> None:
    plan = plan_for(3, warm_pool=5, otlp_endpoint="http://127.0.0.1:4317")
    consumer, provider = plan.system("mec-01"), plan.system("mec-03")
    cfg = plan.system_config(consumer)
    assert cfg.backend == "direct" and cfg.chain == {}
    assert [(p.system_id, p.endpoint) for p in cfg.peers] == [
        ("mec-02", "10.219.0.12:50051"),
        ("mec-03", "10.219.0.13:50051"),
    ]
    assert cfg.offer_policy == CONSUMER_POLICY and cfg.warm_pool == 0
    assert cfg.role == "consumer" and cfg.state_dir == str(consumer.run_dir / "meo")
    # Loopback collector -> the underlay gateway, as seen from a namespace.
    assert cfg.otlp_endpoint == "http://10.219.0.1:4317"
    pcfg = plan.system_config(provider)
    assert pcfg.warm_pool == 5 and pcfg.warm_image == "mecfed/echo:1"
    assert pcfg.offer_policy["capacityReplicas"] == 4 and "tariff" in pcfg.offer_policy
    assert plan_for(3, vim="netns").system_config(provider).warm_pool == 0
    assert plan_for(2).system_config(consumer).otlp_endpoint == ""


def test_given_policies_by_system_then_role() -> None:
    fixed = {"fixed": {"price": "5"}, "capacityReplicas": 2}
    cheap = {"fixed": {"price": "1"}, "capacityReplicas": 9}
    plan = plan_for(4, offer_policies={"provider": fixed, "mec-02": cheap})
    assert plan.offer_policy(plan.system("mec-04")) == fixed
    assert plan.offer_policy(plan.system("mec-02")) == cheap
    assert plan.offer_policy(plan.system("mec-01")) == CONSUMER_POLICY


def test_chain_config() -> None:
    plan = plan_for(2, backend="chain", block_time=5.0)
    system = plan.system("mec-02")
    assert plan.system_config(system).chain == {}  # no contract yet
    cfg = plan.system_config(system, contract="0xC0")
    assert cfg.peers == ()
    assert cfg.chain == {
        "ws_url": "ws://10.219.0.1:50050",
        "contract": "0xC0",
        "keystore": str(system.run_dir / "chain" / "key.json"),
        "password_file": str(system.run_dir / "chain" / "password"),
        "block_period": 5.0,
    }
