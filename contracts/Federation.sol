// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title Federation — reverse auctions between ETSI MEC edge systems (MEF side of Mff)
/// @notice A consumer MEF announces a service with an escrowed maximum price; member MEFs bid
///         (lowest price wins, ties go to the earliest bid); the winner deploys and confirms,
///         which pays it. Endpoints travel ECIES-sealed in calldata/events, never in storage.
///
/// State machine (`State`, uint8): None=0, Open=1, Awarded=2, Deployed=3, Terminated=4,
/// Cancelled=5. Transitions and the single state each one requires:
///   announce                     None     -> Open
///   bid (k-th distinct bidder)   Open     -> Awarded   (auto-close in the same tx)
///   award (after deadline)       Open     -> Awarded   (optional: an Open auction whose bidding
///                                                       deadline passed with >=1 bid already
///                                                       *counts* as Awarded: `stateOf` says so
///                                                       and the winner may confirm directly)
///   cancel                       Open     -> Cancelled (effective Open only, i.e. not lazily
///                                                       awarded; escrow credited back)
///   confirmDeployment            Awarded  -> Deployed  (winner, until the confirm deadline)
///   reopen                       Awarded  -> Open      (consumer, after the confirm deadline;
///                                                       failed winner excluded, new round)
///   terminate                    Deployed -> Terminated (consumer or winner)
/// The confirm deadline is always `closeTime + confirmWindow`, where closeTime is the bidding
/// deadline, or the time of the k-th bid when that closed the auction early.
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
///   InvalidWindow()                   window 0 or > MAX_WINDOW             (INVALID_ARGUMENT)
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
///   NotEligible()                     reopened round: not a previous bidder, or excluded winner
///                                                                          (PERMISSION_DENIED)
///   DeadlineNotPassed()               award/reopen too early               (FAILED_PRECONDITION)
///   NoBids()                          award with no bids                   (FAILED_PRECONDITION)
///   NotWinner()                       confirm by someone else than winner  (PERMISSION_DENIED)
///   ConfirmWindowOver()               confirm after the confirm deadline   (DEADLINE_EXCEEDED)
///   NotParty()                        terminate by a third party           (PERMISSION_DENIED)
///   TooManyRounds()                   reopen beyond 65535 rounds           (RESOURCE_EXHAUSTED)
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

    /// @dev One slot per member address; never deleted, so `index` and `nonce` are stable.
    struct Member {
        uint32 index;        // 1-based, assigned on first registration
        bool active;         // currently a member
        bool allowed;        // ALLOWLIST: on the list; MAJORITY: founder / admitted
        uint32 approvals;    // MAJORITY: approvals of the current application
        uint32 application;  // MAJORITY: application counter (invalidates stale approvals)
        uint64 nonce;        // announcements made as consumer (service id input)
        bool pending;        // MAJORITY: has a pending application
    }

    /// @dev A service: two consecutive slots. Slot 0 (read-only in the bid path) holds the
    ///      consumer and the escrowed maxPrice; slot 1 is the packed hot auction word below.
    struct Service {
        address consumer;
        uint96 maxPrice;
        uint256 auction;
    }

    /// @dev Per (service, provider) bid slot.
    struct Bid {
        uint96 price;   // last price bid (0 = never bid)
        uint16 round;   // round of that bid; the bid is live iff round == service round
        bool excluded;  // failed winner of an earlier round
    }

    /// @dev View struct returned by `serviceOf`.
    struct ServiceView {
        address consumer;
        uint96 maxPrice;
        uint16 k;
        uint16 bidCount;
        State state;
        uint64 deadline;
        uint64 confirmDeadline;
        address winner;
        uint96 bestPrice;
        uint16 round;
        uint32 confirmWindow;
    }

    // Hot auction word (one slot per service), bit layout:
    //   [0..96)    bestPrice (type(uint96).max = no bid yet)
    //   [96..128)  best: member index of the best bidder
    //   [128..160) deadline (closeTime once closed by the k-th bid)
    //   [160..192) confirmWindow
    //   [192..208) k
    //   [208..224) bidCount (distinct bidders this round)
    //   [224..240) round
    //   [240..248) state
    uint256 private constant M96 = (1 << 96) - 1;
    uint256 private constant M32 = (1 << 32) - 1;
    uint256 private constant M16 = (1 << 16) - 1;
    uint256 private constant SH_BEST = 96;
    uint256 private constant SH_DEADLINE = 128;
    uint256 private constant SH_CW = 160;
    uint256 private constant SH_K = 192;
    uint256 private constant SH_COUNT = 208;
    uint256 private constant SH_ROUND = 224;
    uint256 private constant SH_STATE = 240;

    uint8 private constant S_NONE = 0;
    uint8 private constant S_OPEN = 1;
    uint8 private constant S_AWARDED = 2;
    uint8 private constant S_DEPLOYED = 3;
    uint8 private constant S_TERMINATED = 4;
    uint8 private constant S_CANCELLED = 5;

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
        uint64 nonce = m.nonce;
        m.nonce = nonce + 1;
        id = keccak256(abi.encode(block.chainid, address(this), msg.sender, nonce));
        uint256 deadline = block.timestamp + biddingWindow;
        Service storage sv = _services[id];
        sv.consumer = msg.sender;
        sv.maxPrice = maxPrice;
        sv.auction = M96 | (deadline << SH_DEADLINE) | (uint256(confirmWindow) << SH_CW)
            | (uint256(k) << SH_K) | (uint256(S_OPEN) << SH_STATE);
        emit ServiceAnnounced(id, msg.sender, maxPrice, k, uint64(deadline), requirements);
    }

    /// @notice Bid `price` on service `id`. The k-th distinct bidder closes and awards the
    ///         auction in the same transaction. A re-bid must be strictly lower than the
    ///         provider's own live bid and replaces it.
    /// @dev The hot path is hand-written assembly (gas budget: one bid <= 60k incl. a ~100-byte
    ///      sealed endpoint). It touches exactly four slots: the sender's Member slot, the
    ///      service's Head (read-only) and auction word (read+write), and the (service, provider)
    ///      Bid slot. Error selectors below are checked by tests/contracts (every revert path).
    function bid(bytes32 id, uint96 price, bytes calldata sealedEndpoint) external {
        assembly ("memory-safe") {
            function fail(sel) {
                mstore(0, shl(224, sel))
                revert(0, 4)
            }
            if gt(sealedEndpoint.length, MAX_SEALED) { fail(0xfad7e68e) } // PayloadTooLong()
            // Member slot of the sender: index [0..32), active [32..40)
            mstore(0, caller())
            mstore(0x20, _members.slot)
            let mword := sload(keccak256(0, 0x40))
            if iszero(and(shr(32, mword), 0xff)) { fail(0x291fc442) } // NotMember()
            // Auction word
            mstore(0, id)
            mstore(0x20, _services.slot)
            let aslot := keccak256(0, 0x40) // slot 0: consumer | maxPrice
            let a := sload(add(aslot, 1)) // slot 1: auction word
            {
                let st := shr(SH_STATE, a) // bits above the state byte are always 0
                if iszero(eq(st, S_OPEN)) {
                    if iszero(st) { fail(0x183f5325) } // UnknownService()
                    mstore(0, shl(224, 0x5649f63b)) // WrongState(uint8,uint8)
                    mstore(4, S_OPEN)
                    mstore(0x24, st)
                    revert(0, 0x44)
                }
            }
            if iszero(lt(timestamp(), and(shr(SH_DEADLINE, a), M32))) { fail(0x8083ad03) } // BiddingClosed()
            // consumer [0..160), maxPrice [160..256)
            let consumer := sload(aslot)
            aslot := add(aslot, 1)
            if or(iszero(price), gt(price, shr(160, consumer))) { fail(0x37c8a83c) } // PriceOutOfRange()
            consumer := and(consumer, 0xffffffffffffffffffffffffffffffffffffffff)
            if eq(consumer, caller()) { fail(0x04738ffb) } // OwnService()
            // Bid slot: _bids[id][caller]; price [0..96), round [96..112), excluded [112..120)
            mstore(0x20, _bids.slot)
            mstore(0x20, keccak256(0, 0x40))
            mstore(0, caller())
            let newBidder := 0
            {
                let bslot := keccak256(0, 0x40)
                let b := sload(bslot)
                let prev := and(b, M96)
                let round := and(shr(SH_ROUND, a), M16)
                switch and(iszero(iszero(prev)), eq(and(shr(96, b), M16), round))
                case 1 {
                    if iszero(lt(price, prev)) { fail(0xb20b2c20) } // BidNotLower()
                }
                default {
                    // Reopened round: only earlier bidders that are not excluded.
                    if and(iszero(iszero(round)), or(iszero(prev), and(shr(112, b), 0xff))) {
                        fail(0xf8eb54de) // NotEligible()
                    }
                    newBidder := 1
                    // bidCount += 1 (never overflows: the auction closes when it reaches k <= 65535)
                    a := add(a, shl(SH_COUNT, 1))
                }
                // excluded stays false: excluded bidders never get here
                sstore(bslot, or(price, shl(96, round)))
            }
            // strictly lower than the running best replaces it (ties stay with the earliest)
            if lt(price, and(a, M96)) {
                a := or(and(a, not(or(M96, shl(SH_BEST, M32)))), or(price, shl(SH_BEST, and(mword, M32))))
            }
            // emit BidPlaced(id, provider, consumer, price, sealedEndpoint)
            let ptr := mload(0x40)
            mstore(ptr, price)
            mstore(add(ptr, 0x20), 0x40)
            mstore(add(ptr, 0x40), sealedEndpoint.length)
            calldatacopy(add(ptr, 0x60), sealedEndpoint.offset, sealedEndpoint.length)
            mstore(add(add(ptr, 0x60), sealedEndpoint.length), 0) // zero the padding
            log4(
                ptr,
                add(0x60, and(add(sealedEndpoint.length, 31), not(31))),
                // keccak256("BidPlaced(bytes32,address,address,uint96,bytes)")
                0xe2a3b37fd187f454862a4e7e562c5cdbaf5583a04ecc5b22bd3f45803af1d81e,
                id, caller(), consumer
            )
            if and(newBidder, eq(and(shr(SH_COUNT, a), M16), and(shr(SH_K, a), M16))) {
                // auto-close: Awarded now; closeTime = now, so confirm deadline = now + window
                a := or(
                    and(a, not(or(shl(SH_DEADLINE, M32), shl(SH_STATE, 0xff)))),
                    or(shl(SH_DEADLINE, timestamp()), shl(SH_STATE, S_AWARDED))
                )
                let bestIdx := and(shr(SH_BEST, a), M32)
                let winner := caller()
                if iszero(eq(bestIdx, and(mword, M32))) {
                    mstore(0, bestIdx)
                    mstore(0x20, _memberAt.slot)
                    winner := sload(keccak256(0, 0x40))
                }
                // emit ServiceAwarded(id, consumer, provider, price)
                mstore(ptr, and(a, M96))
                // keccak256("ServiceAwarded(bytes32,address,address,uint96)")
                log4(
                    ptr, 0x20,
                    0xf8fb6857a3981a3e905ee0b2bda216597198c7461a4cffcf7f81b50eee56e2f0,
                    id, consumer, winner
                )
            }
            sstore(aslot, a)
        }
    }

    /// @notice Consumer records the award of an auction whose bidding deadline passed with
    ///         at least one bid (optional: such an auction already counts as Awarded).
    function award(bytes32 id) external {
        (address consumer,) = _consumerOnly(id);
        uint256 a = _services[id].auction;
        uint8 st = uint8(a >> SH_STATE);
        if (st != S_OPEN) revert WrongState(S_OPEN, st);
        if (block.timestamp < (a >> SH_DEADLINE) & M32) revert DeadlineNotPassed();
        if ((a >> SH_COUNT) & M16 == 0) revert NoBids();
        _services[id].auction = (a & ~(uint256(0xff) << SH_STATE)) | (uint256(S_AWARDED) << SH_STATE);
        emit ServiceAwarded(id, consumer, _memberAt[uint32(a >> SH_BEST)], uint96(a));
    }

    /// @notice Consumer sends its own (sealed) endpoint to the winner; calldata/event only.
    function sendConsumerEndpoint(bytes32 id, bytes calldata sealedEndpoint) external {
        if (sealedEndpoint.length > MAX_SEALED) revert PayloadTooLong();
        (address consumer,) = _consumerOnly(id);
        uint256 a = _services[id].auction;
        uint8 st = _effective(a);
        if (st != S_AWARDED) revert WrongState(S_AWARDED, st);
        emit ConsumerEndpoint(id, consumer, _memberAt[uint32(a >> SH_BEST)], sealedEndpoint);
    }

    /// @notice Winner confirms the deployment (before the confirm deadline) and is paid:
    ///         price credited to the winner, maxPrice - price back to the consumer.
    function confirmDeployment(bytes32 id, bytes calldata sealedEndpoint) external {
        if (sealedEndpoint.length > MAX_SEALED) revert PayloadTooLong();
        uint256 a = _services[id].auction;
        uint8 st = _effective(a);
        if (st != S_AWARDED) {
            if (st == S_NONE) revert UnknownService();
            revert WrongState(S_AWARDED, st);
        }
        Member storage m = _members[msg.sender];
        if (!m.active) revert NotMember();
        if (m.index != uint32(a >> SH_BEST)) revert NotWinner();
        if (block.timestamp > _confirmDeadline(a)) revert ConfirmWindowOver();
        _services[id].auction = (a & ~(uint256(0xff) << SH_STATE)) | (uint256(S_DEPLOYED) << SH_STATE);
        Service storage h = _services[id];
        address consumer = h.consumer;
        uint96 price = uint96(a);
        uint96 refund = h.maxPrice - price;
        _credit(msg.sender, price);
        if (refund != 0) _credit(consumer, refund);
        emit DeploymentConfirmed(id, consumer, msg.sender, sealedEndpoint);
    }

    /// @notice Consumer cancels before award; the escrow is credited back.
    function cancel(bytes32 id) external {
        (address consumer, uint96 maxPrice) = _consumerOnly(id);
        uint256 a = _services[id].auction;
        uint8 st = _effective(a);
        if (st != S_OPEN) revert WrongState(S_OPEN, st);
        _services[id].auction = (a & ~(uint256(0xff) << SH_STATE)) | (uint256(S_CANCELLED) << SH_STATE);
        _credit(consumer, maxPrice);
        emit ServiceCancelled(id, consumer);
    }

    /// @notice Consumer reopens an awarded auction whose winner did not confirm in time.
    ///         The failed winner is excluded; earlier bidders may bid again for `biddingWindow`.
    function reopen(bytes32 id, uint32 biddingWindow) external {
        (address consumer,) = _consumerOnly(id);
        if (biddingWindow == 0 || biddingWindow > MAX_WINDOW) revert InvalidWindow();
        uint256 a = _services[id].auction;
        uint8 st = _effective(a);
        if (st != S_AWARDED) revert WrongState(S_AWARDED, st);
        if (block.timestamp <= _confirmDeadline(a)) revert DeadlineNotPassed();
        uint256 round = (a >> SH_ROUND) & M16;
        if (round == M16) revert TooManyRounds();
        address loser = _memberAt[uint32(a >> SH_BEST)];
        _bids[id][loser].excluded = true;
        uint256 deadline = block.timestamp + biddingWindow;
        // keep confirmWindow and k; reset best, count; round+1; Open
        _services[id].auction = M96 | (deadline << SH_DEADLINE) | (a & ((M32 << SH_CW) | (M16 << SH_K)))
            | ((round + 1) << SH_ROUND) | (uint256(S_OPEN) << SH_STATE);
        emit ServiceReopened(id, consumer, loser, uint16(round + 1), uint64(deadline));
    }

    /// @notice Consumer or winner ends a deployed federation.
    function terminate(bytes32 id) external {
        uint256 a = _services[id].auction;
        uint8 st = uint8(a >> SH_STATE);
        if (st == S_NONE) revert UnknownService();
        if (st != S_DEPLOYED) revert WrongState(S_DEPLOYED, st);
        if (msg.sender != _services[id].consumer && msg.sender != _memberAt[uint32(a >> SH_BEST)]) {
            revert NotParty();
        }
        _services[id].auction = (a & ~(uint256(0xff) << SH_STATE)) | (uint256(S_TERMINATED) << SH_STATE);
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
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert TransferFailed();
        _locked = false;
    }

    // ------------------------------------------------------------------ views

    /// @notice Effective state: an Open auction past its deadline with >= 1 bid is Awarded.
    function stateOf(bytes32 id) external view returns (State) {
        return State(_effective(_services[id].auction));
    }

    function serviceOf(bytes32 id) external view returns (ServiceView memory v) {
        uint256 a = _services[id].auction;
        Service storage h = _services[id];
        uint8 st = _effective(a);
        uint16 count = uint16(a >> SH_COUNT);
        v.consumer = h.consumer;
        v.maxPrice = h.maxPrice;
        v.k = uint16(a >> SH_K);
        v.bidCount = count;
        v.state = State(st);
        v.deadline = uint64((a >> SH_DEADLINE) & M32);
        v.round = uint16(a >> SH_ROUND);
        v.confirmWindow = uint32(a >> SH_CW);
        if (count != 0) {
            v.winner = _memberAt[uint32(a >> SH_BEST)];
            v.bestPrice = uint96(a);
        }
        if (st >= S_AWARDED) v.confirmDeadline = uint64(_confirmDeadline(a));
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
        live = price != 0 && round == uint16(_services[id].auction >> SH_ROUND);
    }

    // ------------------------------------------------------------------ internals

    function _consumerOnly(bytes32 id) private view returns (address consumer, uint96 maxPrice) {
        Service storage h = _services[id];
        consumer = h.consumer;
        maxPrice = h.maxPrice;
        if (consumer == address(0)) revert UnknownService();
        if (consumer != msg.sender) revert NotConsumer();
    }

    function _effective(uint256 a) private view returns (uint8 st) {
        st = uint8(a >> SH_STATE);
        if (
            st == S_OPEN && block.timestamp >= (a >> SH_DEADLINE) & M32
                && (a >> SH_COUNT) & M16 != 0
        ) st = S_AWARDED;
    }

    function _confirmDeadline(uint256 a) private pure returns (uint256) {
        return ((a >> SH_DEADLINE) & M32) + ((a >> SH_CW) & M32);
    }
}
