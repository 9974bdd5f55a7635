"""The federation workflow: the consumer's and the provider's state machines,
each written once and driven through an Mff transport."""

from mef.workflow.consumer import ConsumerSettings, ConsumerWorkflow
from mef.workflow.provider import ProviderWorkflow

__all__ = ["ConsumerSettings", "ConsumerWorkflow", "ProviderWorkflow"]
