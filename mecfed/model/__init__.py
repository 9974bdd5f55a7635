"""The one domain model of mecfed, shared by MEF and MEO and free of protobuf.

Records validate themselves when built (bounds in :mod:`mecfed.model.checks`),
so an invalid one cannot exist; proto messages are converted at the edge by
:mod:`mecfed.wire`, which is where validation of requests happens.
"""

from mecfed.model.app import AppSpec, Resources
from mecfed.model.federation import (
    AppInstanceDetails,
    DeploymentOrder,
    DeploymentResult,
    Federation,
    FederationRequest,
    FederationState,
    Installation,
    Offer,
    OfferRequest,
    Problem,
    Requirements,
    ServiceNeed,
    Step,
)
from mecfed.model.orchestration import (
    App,
    AppInstance,
    InstanceState,
    OverlayReservation,
    Role,
    ServiceStatus,
    TrafficCheck,
)
from mecfed.model.overlay import OverlayEndpoint, TrafficReport, TunnelCandidate
from mecfed.model.pricing import FixedPricing, OfferPolicy, TariffPricing
from mecfed.model.system import EndPoint, SystemRecord

__all__ = [
    "App",
    "AppInstance",
    "AppInstanceDetails",
    "AppSpec",
    "DeploymentOrder",
    "DeploymentResult",
    "EndPoint",
    "Federation",
    "FederationRequest",
    "FederationState",
    "FixedPricing",
    "Installation",
    "InstanceState",
    "Offer",
    "OfferPolicy",
    "OfferRequest",
    "OverlayEndpoint",
    "OverlayReservation",
    "Problem",
    "Requirements",
    "Resources",
    "Role",
    "ServiceNeed",
    "ServiceStatus",
    "Step",
    "SystemRecord",
    "TariffPricing",
    "TrafficCheck",
    "TrafficReport",
    "TunnelCandidate",
]
