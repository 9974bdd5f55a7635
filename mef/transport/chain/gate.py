"""Admits orders handed over Mff gRPC on the chain backend, where operators
have no prior trust: the order must be signed with the chain key of the
service's consumer, the contract must say that we won the auction, and the
chain's time must not be past the order deadline (so that we always have
our whole deploy window before the confirm deadline: a late order could
never be confirmed, and would be a deployment the consumer gets for free).
Once deployed, the gate hands back a notice signed with our chain key and
confirms on-chain (which starts the consumer's challenge window; the price
follows its acknowledgement); a failed deployment declines the award."""

from __future__ import annotations

from eth_account.signers.local import LocalAccount

from mecfed.chain.federation import FederationContract
from mecfed.chain.sealing import recover_signer, sign_message
from mecfed.errors import DeadlineExceeded, FailedPrecondition, PermissionDenied
from mecfed.model import Installation
from mef.deployments import Deployment
from mef.tasks import TaskSet
from mef.transport.base import Admission, CallerPolicy
from mef.transport.chain import codec
from mef.transport.chain.bidder import Bidder


class ChainGate:
    callers = CallerPolicy.ANY_AUTHENTICATED
    serves_offers = False

    def __init__(
        self, bidder: Bidder, contract: FederationContract, account: LocalAccount, tasks: TaskSet
    ) -> None:
        self._bidder = bidder
        self._contract = contract
        self._account = account
        self._tasks = tasks

    async def admit(self, installation: Installation, caller: str) -> Admission:
        service_id = installation.offer_id.lower()
        bid = self._bidder.bid_on(service_id)
        if bid is None:
            raise FailedPrecondition(f"we did not bid on service {service_id}")
        signer = recover_signer(
            codec.order_digest(
                service_id,
                installation.federation_id,
                installation.consumer_endpoint,
                installation.candidates,
            ),
            installation.consumer_signature,
        )
        if signer != bid.consumer or installation.federation_id != bid.federation_id:
            raise PermissionDenied(f"order for {service_id} is not signed by its consumer")
        view = await self._contract.service(service_id)
        if not view.state.awarded or view.winner != self._account.address:
            raise FailedPrecondition(
                f"service {service_id} is {view.state.name}, not awarded to us"
            )
        now = (await self._contract.client.head()).timestamp
        if now > view.order_deadline:
            raise DeadlineExceeded(
                f"order for {service_id} after its order deadline ({view.order_deadline}, "
                f"chain time {now}): it could not be confirmed in time"
            )
        if not bid.offer_ref:
            raise FailedPrecondition(f"our bid on {service_id} was withdrawn")
        return Admission(consumer_id=bid.consumer, offer_ref=bid.offer_ref, caller=caller)

    def _service_of(self, deployment: Deployment) -> str:
        service_id = self._bidder.service_of(deployment.consumer_id, deployment.federation_id)
        if service_id is None:
            raise FailedPrecondition(f"no auction for federation {deployment.federation_id}")
        return service_id

    async def deployed(self, deployment: Deployment) -> bytes:
        service_id = self._service_of(deployment)
        assert deployment.endpoint is not None
        # The on-chain confirmation (and payment) follows off the critical path.
        self._tasks.spawn(
            self._bidder.confirm(service_id, deployment.endpoint), f"confirm {service_id}"
        )
        return sign_message(self._account, codec.notice_digest(service_id, deployment.endpoint))

    async def failed(self, deployment: Deployment) -> None:
        service_id = self._service_of(deployment)
        self._tasks.spawn(self._bidder.decline(service_id), f"decline {service_id}")


__all__ = ["ChainGate"]
