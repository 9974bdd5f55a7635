"""Testbed: N ETSI MEC systems (MEF + MEO each) in network namespaces on one
machine, with a shared underlay and one mTLS identity per system."""

from mecfed.testbed.testbed import SystemState, Testbed, TestbedState, split_roles

__all__ = ["SystemState", "Testbed", "TestbedState", "split_roles"]
