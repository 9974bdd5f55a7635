// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title Federation — reverse auctions between ETSI MEC edge systems (MEF side of Mff)
/// @notice A consumer MEF announces a service with an escrowed maximum price; member MEFs bid
///         (lowest price wins, ties go to the earliest bid); the winner deploys and confirms,
///         which pays it. Endpoints travel ECIES-sealed in calldata/events, never in storage.
///
/// State machine (`State`, uint8): None=0, Open=1, Awarded=2, Deployed=3, Terminated=4,
/// Cancelled=5. Transitions and the state each one requires ("effective" state: an Open
/// auction whose bidding deadline passed with >= 1 bid counts as Awarded):
///   announce                     None     -> Open
///   bid (k-th distinct bidder)   Open     -> Awarded   (auto-close in the same tx)
///   award (after deadline)       Open     -> Awarded   (stored state Open, consumer; optional:
///                                                       such an auction already *counts* as
///                                                       Awarded: `stateOf` says so and the
///                                                       winner may confirm directly)
///   cancel                       Open     -> Cancelled (consumer, effective Open; escrow
///                                                       credited back)
///                                Awarded  -> Cancelled (consumer, only after the confirm
///                                                       deadline passed unconfirmed: the same
///                                                       outcome as reopen + cancel, and the
///                                                       way out once rounds are exhausted)
///   confirmDeployment            Awarded  -> Deployed  (winner, until the confirm deadline)
///   decline                      Awarded  -> Open      (winner, any time before it confirmed:
///                                                       it cannot deploy; winner excluded,
///                                                       new round for the announced window)
///   reopen                       Awarded  -> Open      (consumer, after the confirm deadline;
///                                                       failed winner excluded, new round)
///   terminate                    Deployed -> Terminated (consumer or winner)
/// The confirm deadline is always `closeTime + confirmWindow`, where closeTime is the bidding
/// deadline, or the time of the bid that closed the auction early.
/// Rounds: round 0 is open to every member but the consumer and closes at its k-th distinct
/// bidder (its quorum) or at its deadline. A new round (reopen, decline) excludes the winner,
/// resets the best bid and the bidder count, and admits only the bidders of earlier rounds that
/// were never excluded; at most k - 1 of them exist, so such a round closes once all of them
/// have bid (its quorum: the eligible bidders), or at its deadline.
///
/// Custom errors (the MEF maps them to gRPC statuses):
///   NotMember()                       caller is not an active member       (PERMISSION_DENIED)
///   NotAdmin()                        allow/disallow by non-admin          (PERMISSION_DENIED)
///   WrongPolicy()                     function not available in this admission policy
///                                                                          (FAILED_PRECONDITION)
///   NotAllowed()                      ALLOWLIST register while not allowed (PERMISSION_DENIED)
///   AlreadyMember()                   register/approve on an active member (ALREADY_EXISTS)
///   BadName()                         name length not in 1..64             (INVALID_ARGUMENT)
///   BadPublicKey()                    pubkey not 64 bytes or not the sender's key
///                                                                          (INVALID_ARGUMENT)
///   NotApplicant()                    approve on an address without a pending application
///                                                                          (NOT_FOUND)
///   AlreadyApproved()                 second approval by the same member  (ALREADY_EXISTS)
///   EscrowMismatch()                  msg.value != maxPrice                (INVALID_ARGUMENT)
///   InvalidK()                        k == 0                               (INVALID_ARGUMENT)
///   InvalidWindow()                   window 0 or > MAX_WINDOW, or a deadline beyond
///                                     type(uint40).max                     (INVALID_ARGUMENT)
///   RequirementsTooLong()             requirements > MAX_REQUIREMENTS      (INVALID_ARGUMENT)
///   PayloadTooLong()                  sealed endpoint > MAX_SEALED         (INVALID_ARGUMENT)
///   UnknownService()                  no service with this id              (NOT_FOUND)
///   WrongState(uint8 expected, uint8 actual)  effective state differs      (FAILED_PRECONDITION)
///   NotConsumer()                     consumer-only function               (PERMISSION_DENIED)
///   OwnService()                      consumer bidding on its own service  (PERMISSION_DENIED)
///   BiddingClosed()                   bid at/after the bidding deadline    (DEADLINE_EXCEEDED)
///   PriceOutOfRange()                 price == 0 or price > maxPrice       (INVALID_ARGUMENT)
///   BidNotLower()                     re-bid not strictly lower than own live bid
///                                                                          (FAILED_PRECONDITION)
///   NotEligible()                     new round: not a previous bidder, or excluded winner
///                                                                          (PERMISSION_DENIED)
///   DeadlineNotPassed()               award/reopen too early               (FAILED_PRECONDITION)
///   NoBids()                          award with no bids                   (FAILED_PRECONDITION)
///   NotWinner()                       confirm/decline by someone else than the winner
///                                                                          (PERMISSION_DENIED)
///   ConfirmWindowOver()               confirm after the confirm deadline   (DEADLINE_EXCEEDED)
///   NotParty()                        terminate by a third party           (PERMISSION_DENIED)
///   TooManyRounds()                   reopen/decline beyond 65535 rounds   (RESOURCE_EXHAUSTED)
///   NothingToWithdraw()               withdraw with zero credit            (FAILED_PRECONDITION)
///   TransferFailed()                  withdraw transfer reverted           (INTERNAL)
///   Reentrancy()                      re-entered withdraw                  (ABORTED)
contract Federation {
    // ------------------------------------------------------------------ types / constants

    enum Policy { ALLOWLIST, MAJORITY }
    enum State { None, Open, Awarded, Deployed, Terminated, Cancelled }

    uint256 internal constant MAX_NAME = 64;
    uint256 internal constant MAX_REQUIREMENTS = 1024;
    uint256 internal constant MAX_SEALED = 256;
    uint256 internal constant MAX_WINDOW = 30 days;
    uint16 internal constant MAX_ROUND = type(uint16).max;

    /// @dev One slot per member address; never deleted, so `index` and `nonce` are stable.
    struct Member {
        uint32 index;        // 1-based, assigned on first registration, never reassigned
        bool active;         // currently a member
        bool allowed;        // ALLOWLIST: on the list; MAJORITY: founder / admitted
        uint32 approvals;    // MAJORITY: approvals of the current application
        uint32 application;  // MAJORITY: application counter (invalidates stale approvals)
        uint64 nonce;        // announcements made as consumer (service id input)
        bool pending;        // MAJORITY: has a pending application
    }

    /// @dev The hot auction state of a service: exactly one slot (96+32+40+32+16+16+16+8 bits),
    ///      so a bid reads and writes it once. The winner is the member index `best`, which is
    ///      what lets everything a bid changes fit in this word.
    struct Auction {
        uint96 bestPrice;      // lowest bid of the current round (0 while bidCount == 0)
        uint32 best;           // member index of the bidder of bestPrice (0 while bidCount == 0)
        uint40 deadline;       // bidding deadline; the time of the closing bid once that closed it
        uint32 confirmWindow;  // seconds after closeTime (= deadline) the winner may confirm
        uint16 quorum;         // distinct bidders that close this round: k in round 0, the
                               // eligible bidders (earlier bidders not excluded) after that
        uint16 bidCount;       // distinct bidders in the current round
        uint16 round;          // 0, +1 per reopen/decline (= number of excluded winners)
        State state;           // stored state (see `_effective`)
    }

    /// @dev A service: three slots. Slot 0 is written once by announce; slot 1 is the auction;
    ///      slot 2 (written once by announce) is read by decline and the views only.
    struct Service {
        address consumer;
        uint96 maxPrice;       // escrowed by announce
        Auction auction;
        uint32 biddingWindow;  // announced bidding window (the length of a declined round)
        uint16 k;              // announced k
    }

    /// @dev Per (service, provider) bid slot.
    struct Bid {
        uint96 price;   // last price bid (0 = never bid)
        uint16 round;   // round of that bid; the bid is live iff round == service round
        bool excluded;  // winner of an earlier round that did not deploy (reopen/decline)
    }

    /// @dev View struct returned by `serviceOf`.
    struct ServiceView {
        address consumer;
        uint96 maxPrice;
        uint16 k;
        uint16 bidCount;
        State state;           // effective state
        uint64 deadline;       // bidding deadline (closeTime once the k-th bid closed it)
        uint64 confirmDeadline;  // 0 while effectively Open
        address winner;        // best bidder so far (0 without bids)
        uint96 bestPrice;      // 0 without bids
        uint16 round;
        uint32 confirmWindow;
        uint32 biddingWindow;  // as announced
        uint16 quorum;         // distinct bidders that close the current round (k in round 0)
    }

    // ------------------------------------------------------------------ storage

    Policy public immutable membershipPolicy;
    address public immutable admin;

    uint32 public totalMembers;
    uint32 private _lastIndex;

    mapping(address => Member) private _members;
    mapping(uint32 => address) private _memberAt;
    mapping(address => bytes32[2]) private _keys;
    mapping(address => string) private _names;
    /// approver => applicant => application counter approved
    mapping(address => mapping(address => uint32)) private _approved;

    mapping(bytes32 => Service) private _services;
    mapping(bytes32 => mapping(address => Bid)) private _bids;

    /// @dev Pull-payment credits, stored as amount + 1 once initialised (at admission), so that
    ///      crediting a member at confirm time rewrites a non-zero slot (5k gas, not 22k).
    mapping(address => uint256) private _credits;

    bool private transient _locked;

    // ------------------------------------------------------------------ events

    event MemberJoined(address indexed member, string name, bytes pubkey);
    event MemberLeft(address indexed member);
    event MemberApplied(address indexed applicant, string name, bytes pubkey);
    event MemberApproved(address indexed applicant, address indexed approver, uint32 approvals);
    event Allowed(address indexed account);
    event Disallowed(address indexed account);

    event ServiceAnnounced(
        bytes32 indexed id,
        address indexed consumer,
        uint96 maxPrice,
        uint16 k,
        uint64 biddingDeadline,
        bytes requirements
    );
    event BidPlaced(
        bytes32 indexed id,
        address indexed provider,
        address indexed consumer,
        uint96 price,
        bytes sealedEndpoint
    );
    event ServiceAwarded(
        bytes32 indexed id, address indexed consumer, address indexed provider, uint96 price
    );
    event ConsumerEndpoint(
        bytes32 indexed id, address indexed consumer, address indexed provider, bytes sealedEndpoint
    );
    event DeploymentConfirmed(
        bytes32 indexed id, address indexed consumer, address indexed provider, bytes sealedEndpoint
    );
    /// @dev Emitted by reopen (consumer) and by decline (winner): a new round has started.
    event ServiceReopened(
        bytes32 indexed id,
        address indexed consumer,
        address indexed excluded,
        uint16 round,
        uint64 biddingDeadline
    );
    event ServiceCancelled(bytes32 indexed id, address indexed consumer);
    event ServiceTerminated(bytes32 indexed id, address indexed by);
    event Withdrawn(address indexed account, uint256 amount);

    // ------------------------------------------------------------------ errors

    error NotMember();
    error NotAdmin();
    error WrongPolicy();
    error NotAllowed();
    error AlreadyMember();
    error BadName();
    error BadPublicKey();
    error NotApplicant();
    error AlreadyApproved();
    error EscrowMismatch();
    error InvalidK();
    error InvalidWindow();
    error RequirementsTooLong();
    error PayloadTooLong();
    error UnknownService();
    error WrongState(uint8 expected, uint8 actual);
    error NotConsumer();
    error OwnService();
    error BiddingClosed();
    error PriceOutOfRange();
    error BidNotLower();
    error NotEligible();
    error DeadlineNotPassed();
    error NoBids();
    error NotWinner();
    error ConfirmWindowOver();
    error NotParty();
    error TooManyRounds();
    error NothingToWithdraw();
    error TransferFailed();
    error Reentrancy();

    // ------------------------------------------------------------------ construction

    /// @param policy_ 0 = ALLOWLIST (the deployer is admin), 1 = MAJORITY.
    /// @param initialMembers pre-allowed addresses (founders); they become members by calling
    ///        `register` with their own name and public key, without approvals.
    constructor(Policy policy_, address[] memory initialMembers) {
        membershipPolicy = policy_;
        admin = msg.sender;
        for (uint256 i = 0; i < initialMembers.length; ++i) {
            _members[initialMembers[i]].allowed = true;
            emit Allowed(initialMembers[i]);
        }
    }

    // ------------------------------------------------------------------ membership

    /// @notice ALLOWLIST: admin puts `account` on the allowlist.
    function allow(address account) external {
        if (membershipPolicy != Policy.ALLOWLIST) revert WrongPolicy();
        if (msg.sender != admin) revert NotAdmin();
        _members[account].allowed = true;
        emit Allowed(account);
    }

    /// @notice ALLOWLIST: admin removes `account` from the allowlist; an active member is
    ///         also removed from the federation (MemberLeft).
    function disallow(address account) external {
        if (membershipPolicy != Policy.ALLOWLIST) revert WrongPolicy();
        if (msg.sender != admin) revert NotAdmin();
        Member storage m = _members[account];
        m.allowed = false;
        emit Disallowed(account);
        if (m.active) _removeMember(account, m);
    }

    /// @notice Register (ALLOWLIST, or MAJORITY founder/admitted) or apply (MAJORITY newcomer).
    /// @param name 1..64 bytes.
    /// @param pubkey 64-byte uncompressed secp256k1 public key without the 0x04 prefix; must be
    ///        the key of msg.sender (keccak256(pubkey)[12:] == msg.sender).
    function register(string calldata name, bytes calldata pubkey) external {
        uint256 nl = bytes(name).length;
        if (nl == 0 || nl > MAX_NAME) revert BadName();
        if (pubkey.length != 64) revert BadPublicKey();
        if (address(uint160(uint256(keccak256(pubkey)))) != msg.sender) revert BadPublicKey();
        Member storage m = _members[msg.sender];
        if (m.active) revert AlreadyMember();
        _keys[msg.sender] = [bytes32(pubkey[0:32]), bytes32(pubkey[32:64])];
        _names[msg.sender] = name;
        if (m.allowed) {
            _admit(msg.sender, m);
        } else if (membershipPolicy == Policy.ALLOWLIST) {
            revert NotAllowed();
        } else {
            unchecked {
                m.application += 1;
            }
            m.approvals = 0;
            m.pending = true;
            emit MemberApplied(msg.sender, name, pubkey);
        }
    }

    /// @notice MAJORITY: an active member approves a pending applicant; the applicant is
    ///         admitted once approvals > totalMembers / 2 (current members).
    function approve(address applicant) external {
        if (membershipPolicy != Policy.MAJORITY) revert WrongPolicy();
        if (!_members[msg.sender].active) revert NotMember();
        Member storage m = _members[applicant];
        if (m.active) revert AlreadyMember();
        if (!m.pending) revert NotApplicant();
        if (_approved[msg.sender][applicant] == m.application) revert AlreadyApproved();
        _approved[msg.sender][applicant] = m.application;
        uint32 approvals = m.approvals + 1;
        m.approvals = approvals;
        emit MemberApproved(applicant, msg.sender, approvals);
        if (uint256(approvals) * 2 > totalMembers) {
            m.allowed = true;
            m.pending = false;
            _admit(applicant, m);
        }
    }

    /// @notice Leave the federation. Running services are unaffected; a left member can still
    ///         cancel/reopen/terminate its services and withdraw, but not announce, bid or confirm.
    function leave() external {
        Member storage m = _members[msg.sender];
        if (!m.active) revert NotMember();
        if (membershipPolicy == Policy.MAJORITY) m.allowed = false;
        _removeMember(msg.sender, m);
    }

    function _admit(address account, Member storage m) private {
        if (m.index == 0) {
            uint32 idx = ++_lastIndex;
            m.index = idx;
            _memberAt[idx] = account;
        }
        m.active = true;
        m.pending = false;
        if (_credits[account] == 0) _credits[account] = 1;
        totalMembers += 1;
        bytes32[2] storage k = _keys[account];
        emit MemberJoined(account, _names[account], abi.encodePacked(k[0], k[1]));
    }

    function _removeMember(address account, Member storage m) private {
        m.active = false;
        totalMembers -= 1;
        emit MemberLeft(account);
    }

    function isMember(address account) external view returns (bool) {
        return _members[account].active;
    }

    function isAllowed(address account) external view returns (bool) {
        return _members[account].allowed;
    }

    /// @notice The 64-byte public key of an active member (empty for non-members).
    function memberKey(address account) external view returns (bytes memory) {
        if (!_members[account].active) return "";
        bytes32[2] storage k = _keys[account];
        return abi.encodePacked(k[0], k[1]);
    }

    function memberName(address account) external view returns (string memory) {
        return _members[account].active ? _names[account] : "";
    }

    /// @return pending application pending, approvals of that application.
    function applicationStatus(address account) external view returns (bool pending, uint32 approvals) {
        Member storage m = _members[account];
        return (m.pending, m.approvals);
    }

    /// @notice The nonce the next announcement of `consumer` will use.
    function nonceOf(address consumer) external view returns (uint64) {
        return _members[consumer].nonce;
    }

    function credits(address account) external view returns (uint256) {
        uint256 c = _credits[account];
        return c == 0 ? 0 : c - 1;
    }

    /// @return maxName, maxRequirements, maxSealed (bytes) and maxWindow (seconds).
    function limits() external pure returns (uint256, uint256, uint256, uint256) {
        return (MAX_NAME, MAX_REQUIREMENTS, MAX_SEALED, MAX_WINDOW);
    }

    function _credit(address account, uint256 amount) internal {
        uint256 c = _credits[account];
        _credits[account] = (c == 0 ? 1 : c) + amount;
    }

    // ------------------------------------------------------------------ auction

    /// @notice Announce a service. `msg.value` must equal `maxPrice` (escrow).
    /// @return id keccak256(abi.encode(chainid, this, consumer, consumerNonce)).
    function announce(
        uint96 maxPrice,
        uint16 k,
        uint32 biddingWindow,
        uint32 confirmWindow,
        bytes calldata requirements
    ) external payable returns (bytes32 id) {
        Member storage m = _members[msg.sender];
        if (!m.active) revert NotMember();
        if (msg.value != maxPrice) revert EscrowMismatch();
        if (maxPrice == 0) revert PriceOutOfRange();
        if (k == 0) revert InvalidK();
        if (biddingWindow == 0 || biddingWindow > MAX_WINDOW) revert InvalidWindow();
        if (confirmWindow == 0 || confirmWindow > MAX_WINDOW) revert InvalidWindow();
        if (requirements.length > MAX_REQUIREMENTS) revert RequirementsTooLong();
        uint40 deadline = _deadline(biddingWindow);
        uint64 nonce = m.nonce;
        m.nonce = nonce + 1;
        id = keccak256(abi.encode(block.chainid, address(this), msg.sender, nonce));
        // A fresh id: (consumer, nonce) never repeats, so this slot was never written.
        Service storage s = _services[id];
        s.consumer = msg.sender;
        s.maxPrice = maxPrice;
        s.auction = Auction({
            bestPrice: 0,
            best: 0,
            deadline: deadline,
            confirmWindow: confirmWindow,
            quorum: k,
            bidCount: 0,
            round: 0,
            state: State.Open
        });
        s.biddingWindow = biddingWindow;
        s.k = k;
        emit ServiceAnnounced(id, msg.sender, maxPrice, k, deadline, requirements);
    }

    /// @notice Bid `price` on service `id`. The distinct bidder that reaches the round's quorum
    ///         (the k-th in round 0) closes and awards the auction in the same transaction. A
    ///         re-bid must be strictly lower than the provider's own live bid and replaces it.
    /// @dev Touches four slots: the sender's Member, the service's consumer/maxPrice slot
    ///      (read-only) and auction word (read once, written once), and the (service, provider)
    ///      Bid; the k-th bid also reads the winner's address unless the sender is the winner.
    function bid(bytes32 id, uint96 price, bytes calldata sealedEndpoint) external {
        if (sealedEndpoint.length > MAX_SEALED) revert PayloadTooLong();
        Member storage m = _members[msg.sender];
        if (!m.active) revert NotMember();
        Service storage s = _services[id];
        Auction memory a = s.auction;
        _requireState(a.state, State.Open);
        if (block.timestamp >= a.deadline) revert BiddingClosed();
        address consumer = s.consumer;
        if (price == 0 || price > s.maxPrice) revert PriceOutOfRange();
        if (consumer == msg.sender) revert OwnService();
        bool newBidder = _recordBid(id, a.round, price);

        // The first bid of a round is the best; after that only a strictly lower one (ties
        // stay with the earliest bid).
        bool best = a.bidCount == 0 || price < a.bestPrice;
        if (best) {
            a.bestPrice = price;
            a.best = m.index;
        }
        emit BidPlaced(id, msg.sender, consumer, price, sealedEndpoint);
        if (newBidder) {
            // Cannot overflow: the round closes when bidCount reaches quorum <= type(uint16).max.
            a.bidCount += 1;
            if (a.bidCount == a.quorum) {
                // Auto-close: closeTime = now (< the old deadline), so the confirm deadline is
                // now + confirmWindow.
                a.state = State.Awarded;
                a.deadline = _toTime(block.timestamp);
                // The closing bidder is new in this round: it is the winner iff this bid made it
                // the best (then its address needs no lookup).
                address winner = best ? msg.sender : _memberAt[a.best];
                emit ServiceAwarded(id, consumer, winner, a.bestPrice);
            }
        }
        s.auction = a;
    }

    /// @notice Consumer records the award of an auction whose bidding deadline passed with
    ///         at least one bid (optional: such an auction already counts as Awarded).
    function award(bytes32 id) external {
        (address consumer,) = _consumerOnly(id);
        Auction storage a = _services[id].auction;
        if (a.state != State.Open) revert WrongState(uint8(State.Open), uint8(a.state));
        if (block.timestamp < a.deadline) revert DeadlineNotPassed();
        if (a.bidCount == 0) revert NoBids();
        a.state = State.Awarded;
        emit ServiceAwarded(id, consumer, _memberAt[a.best], a.bestPrice);
    }

    /// @notice Consumer sends its own (sealed) endpoint to the winner; calldata/event only.
    function sendConsumerEndpoint(bytes32 id, bytes calldata sealedEndpoint) external {
        if (sealedEndpoint.length > MAX_SEALED) revert PayloadTooLong();
        (address consumer,) = _consumerOnly(id);
        Auction memory a = _services[id].auction;
        State st = _effective(a);
        if (st != State.Awarded) revert WrongState(uint8(State.Awarded), uint8(st));
        emit ConsumerEndpoint(id, consumer, _memberAt[a.best], sealedEndpoint);
    }

    /// @notice Winner confirms the deployment (before the confirm deadline) and is paid:
    ///         price credited to the winner, maxPrice - price back to the consumer.
    function confirmDeployment(bytes32 id, bytes calldata sealedEndpoint) external {
        if (sealedEndpoint.length > MAX_SEALED) revert PayloadTooLong();
        Service storage s = _services[id];
        Auction memory a = s.auction;
        _requireState(_effective(a), State.Awarded);
        Member storage m = _members[msg.sender];
        if (!m.active) revert NotMember();
        if (m.index != a.best) revert NotWinner();
        if (block.timestamp > _confirmDeadline(a)) revert ConfirmWindowOver();
        s.auction.state = State.Deployed;
        address consumer = s.consumer;
        uint96 price = a.bestPrice;
        uint96 refund = s.maxPrice - price; // price <= maxPrice (bid guard)
        _credit(msg.sender, price);
        if (refund != 0) _credit(consumer, refund);
        emit DeploymentConfirmed(id, consumer, msg.sender, sealedEndpoint);
    }

    /// @notice The winner declines an award it cannot deploy (before confirming; also after
    ///         its confirm deadline). Its bid is excluded and a new round starts at once, for the
    ///         announced bidding window, exactly as `reopen` does.
    function decline(bytes32 id) external {
        Service storage s = _services[id];
        Auction memory a = s.auction;
        _requireState(_effective(a), State.Awarded);
        // A non-member has index 0, and an awarded auction has a best bidder (index >= 1).
        // A winner that left the federation may still decline.
        if (_members[msg.sender].index != a.best) revert NotWinner();
        _newRound(id, s, a, s.biddingWindow);
    }

    /// @notice Consumer cancels: before the award, or after an award whose winner let the
    ///         confirm deadline pass. The escrow is credited back to the consumer.
    function cancel(bytes32 id) external {
        (address consumer, uint96 maxPrice) = _consumerOnly(id);
        Auction storage a = _services[id].auction;
        State st = _effective(a);
        // Reason: State is an enum (compared by value); slither sees it derived from the time.
        // slither-disable-next-line incorrect-equality
        bool failedWinner = st == State.Awarded && block.timestamp > _confirmDeadline(a);
        if (st != State.Open && !failedWinner) revert WrongState(uint8(State.Open), uint8(st));
        a.state = State.Cancelled;
        _credit(consumer, maxPrice);
        emit ServiceCancelled(id, consumer);
    }

    /// @notice Consumer reopens an awarded auction whose winner did not confirm in time.
    ///         The failed winner is excluded; earlier bidders may bid again for `biddingWindow`.
    function reopen(bytes32 id, uint32 biddingWindow) external {
        _consumerOnly(id);
        if (biddingWindow == 0 || biddingWindow > MAX_WINDOW) revert InvalidWindow();
        Service storage s = _services[id];
        Auction memory a = s.auction;
        State st = _effective(a);
        if (st != State.Awarded) revert WrongState(uint8(State.Awarded), uint8(st));
        if (block.timestamp <= _confirmDeadline(a)) revert DeadlineNotPassed();
        _newRound(id, s, a, biddingWindow);
    }

    /// @notice Consumer or winner ends a deployed federation.
    function terminate(bytes32 id) external {
        Service storage s = _services[id];
        Auction storage a = s.auction;
        _requireState(a.state, State.Deployed);
        if (msg.sender != s.consumer && msg.sender != _memberAt[a.best]) revert NotParty();
        a.state = State.Terminated;
        emit ServiceTerminated(id, msg.sender);
    }

    /// @notice Pull payment of the caller's credits (any address, members or not).
    function withdraw() external {
        if (_locked) revert Reentrancy();
        _locked = true;
        uint256 c = _credits[msg.sender];
        if (c <= 1) revert NothingToWithdraw();
        uint256 amount = c - 1;
        _credits[msg.sender] = 1;
        emit Withdrawn(msg.sender, amount);
        // Reason: a pull payment to an arbitrary account must forward its gas (transfer's 2300
        // would fail smart-contract wallets); the result is checked below.
        // slither-disable-next-line low-level-calls
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert TransferFailed();
        // Reason: the lock guards the call above, so it is released after it; the credit was
        // settled before the call (checks-effects-interactions) and the lock is transient.
        // slither-disable-next-line reentrancy-eth
        _locked = false;
    }

    // ------------------------------------------------------------------ views

    /// @notice Effective state: an Open auction past its deadline with >= 1 bid is Awarded.
    function stateOf(bytes32 id) external view returns (State) {
        return _effective(_services[id].auction);
    }

    function serviceOf(bytes32 id) external view returns (ServiceView memory v) {
        Service storage s = _services[id];
        Auction memory a = s.auction;
        State st = _effective(a);
        v.consumer = s.consumer;
        v.maxPrice = s.maxPrice;
        v.k = s.k;
        v.bidCount = a.bidCount;
        v.state = st;
        v.deadline = a.deadline;
        v.round = a.round;
        v.confirmWindow = a.confirmWindow;
        v.biddingWindow = s.biddingWindow;
        v.quorum = a.quorum;
        if (a.bidCount != 0) {
            v.winner = _memberAt[a.best];
            v.bestPrice = a.bestPrice;
        }
        if (st >= State.Awarded) v.confirmDeadline = _confirmDeadline(a);
    }

    /// @return price last price bid by `provider` (0 = never), round of that bid,
    ///         live (bid belongs to the current round), excluded (failed winner earlier).
    function bidOf(bytes32 id, address provider)
        external
        view
        returns (uint96 price, uint16 round, bool live, bool excluded)
    {
        Bid storage b = _bids[id][provider];
        price = b.price;
        round = b.round;
        excluded = b.excluded;
        // Reason: a round counter compared by value; slither sees the auction word as time-derived.
        // slither-disable-next-line incorrect-equality
        live = price != 0 && round == _services[id].auction.round;
    }

    // ------------------------------------------------------------------ internals

    function _consumerOnly(bytes32 id) private view returns (address consumer, uint96 maxPrice) {
        Service storage s = _services[id];
        consumer = s.consumer;
        maxPrice = s.maxPrice;
        if (consumer == address(0)) revert UnknownService();
        if (consumer != msg.sender) revert NotConsumer();
    }

    /// @dev Reverts unless `st` is `want`: UnknownService for no service, else WrongState.
    function _requireState(State st, State want) private pure {
        if (st != want) {
            // Reason: State is an enum (compared by value); slither sees it derived from the time.
            // slither-disable-next-line incorrect-equality
            if (st == State.None) revert UnknownService();
            revert WrongState(uint8(want), uint8(st));
        }
    }

    /// @dev Records msg.sender's bid of `price` in `round`; returns whether it is the sender's
    ///      first bid of the round (a new distinct bidder). A new round admits only bidders of
    ///      earlier rounds that were never excluded; a re-bid must be strictly lower.
    function _recordBid(bytes32 id, uint16 round, uint96 price) private returns (bool newBidder) {
        Bid memory prev = _bids[id][msg.sender];
        newBidder = prev.price == 0 || prev.round != round;
        if (newBidder) {
            if (round != 0 && (prev.price == 0 || prev.excluded)) revert NotEligible();
        } else if (price >= prev.price) {
            revert BidNotLower();
        }
        // `excluded` is false here: an excluded bidder was stopped by NotEligible above.
        _bids[id][msg.sender] = Bid({price: price, round: round, excluded: false});
    }

    /// @dev Excludes the current winner and starts round + 1 (Open, no bids) that lasts
    ///      `biddingWindow` seconds from now. Shared by reopen and decline.
    ///      Its quorum is the number of bidders still eligible: the bidders of earlier rounds
    ///      (all of them bid in round 0, whose distinct bidders are its bidCount) that were never
    ///      excluded. In round 0 they are bidCount, in a later round its quorum; one less once
    ///      the winner, one of them, is excluded. (>= 1 each: an awarded round has a bid.)
    function _newRound(bytes32 id, Service storage s, Auction memory a, uint32 biddingWindow)
        private
    {
        if (a.round == MAX_ROUND) revert TooManyRounds();
        uint16 round = a.round + 1;
        uint16 quorum = (a.round == 0 ? a.bidCount : a.quorum) - 1;
        uint40 deadline = _deadline(biddingWindow);
        address excluded = _memberAt[a.best];
        _bids[id][excluded].excluded = true;
        s.auction = Auction({
            bestPrice: 0,
            best: 0,
            deadline: deadline,
            confirmWindow: a.confirmWindow,
            quorum: quorum,
            bidCount: 0,
            round: round,
            state: State.Open
        });
        emit ServiceReopened(id, s.consumer, excluded, round, deadline);
    }

    function _effective(Auction memory a) private view returns (State) {
        // Reason: State is an enum (compared by value); slither sees it derived from the time.
        // slither-disable-next-line incorrect-equality
        if (a.state == State.Open && block.timestamp >= a.deadline && a.bidCount != 0) {
            return State.Awarded;
        }
        return a.state;
    }

    /// @dev closeTime + confirmWindow; < 2^41, so it never overflows uint64.
    function _confirmDeadline(Auction memory a) private pure returns (uint64) {
        return uint64(a.deadline) + a.confirmWindow;
    }

    /// @dev now + window as a deadline; reverts rather than wrap.
    function _deadline(uint32 window) private view returns (uint40) {
        return _toTime(block.timestamp + window);
    }

    /// @dev Checked narrowing of a timestamp to the stored width.
    function _toTime(uint256 t) private pure returns (uint40) {
        if (t > type(uint40).max) revert InvalidWindow();
        // casting to 'uint40' is safe because t <= type(uint40).max was checked above
        // forge-lint: disable-next-line(unsafe-typecast)
        return uint40(t);
    }
}
