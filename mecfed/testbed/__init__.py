"""Testbed: N ETSI MEC systems (MEF + MEO each) in network namespaces on one
machine, with a shared underlay and one mTLS identity per system.

``plan`` (pure: roles, names, addresses, ports, configs) -> provisioners
(``pki``, ``netns``, ``chain``, ``containers``) and ``supervisor``
(processes, health) -> ``testbed`` (``Testbed.up``/``down``, ordering and
crash safety); ``state`` is what is saved between them.
"""

from mecfed.testbed.plan import Params, Plan, SystemPlan, make_plan, split_roles
from mecfed.testbed.state import SystemState, TestbedState
from mecfed.testbed.testbed import Testbed

__all__ = [
    "Params",
    "Plan",
    "SystemPlan",
    "SystemState",
    "Testbed",
    "TestbedState",
    "make_plan",
    "split_roles",
]
