// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title Federation — reverse auctions between ETSI MEC edge systems (MEF side of Mff)
/// @notice A consumer MEF announces a service with an escrowed maximum price and bounded
///         windows; member MEFs bid with a bond (lowest price wins; ties by a rule independent
///         of transaction order); the consumer orders, the winner deploys and confirms, and the
///         price is released only by the consumer's acknowledgement or after a challenge
///         window without complaint. Endpoints travel ECIES-sealed in calldata/events only.
///
/// State machine (`State`, uint8): None=0, Open=1, Awarded=2, Deployed=3, Terminated=4,
/// Cancelled=5, Closing=6, Acknowledged=7. "Effective" state (what `stateOf` says): an Open
/// auction past its bidding deadline with >= 1 bid is Awarded; a Closing auction is Awarded
/// from the block after its closing block on; a Deployed service past its challenge deadline
/// is Acknowledged (the price is then the winner's; `settle` books it).
///   announce                     None     -> Open       (escrow maxPrice)
///   bid (k-th distinct bidder)   Open     -> Closing    (closeBlock = this block; every bid in
///                                                        this same block still competes)
///   (block after closeBlock)     Closing  -> Awarded    (lazily; no transaction)
///   (bidding deadline, >= 1 bid) Open     -> Awarded    (lazily; `award` records it, optional)
///   sendConsumerEndpoint         Awarded  (consumer, until the order deadline; marks "ordered")
///   confirmDeployment            Awarded  -> Deployed   (winner, until the confirm deadline;
///                                                        starts the challenge window; pays nothing)
///   acknowledge                  Deployed -> Acknowledged (consumer: traffic verified; pays)
///   settle                       Deployed -> Acknowledged (anyone, after the challenge window)
///   terminate                    Deployed -> Terminated (consumer or winner, inside the challenge
///                                                        window: the consumer's complaint; the
///                                                        consumer gets its whole escrow back, the
///                                                        winner its bond, nobody the price)
///                                Acknowledged -> Terminated (consumer or winner; money settled)
///   decline                      Awarded  -> Open       (winner, before confirming: new round)
///   reopen                       Awarded  -> Open       (consumer, after the confirm deadline)
///   cancel                       Open|Closing|Awarded -> Cancelled (consumer, any time before the
///                                                        winner confirmed; escrow credited back)
///
/// Schedule (all times are chain time, block.timestamp): closeTime is the bidding deadline, or
/// the timestamp of the closing block when the k-th bid closed the round early. Then
///   orderDeadline     = closeTime + orderWindow     (the consumer's order: on-chain
///                       `sendConsumerEndpoint` reverts after it, and the provider's MEF refuses
///                       a direct (Mff gRPC) order once the chain's head is past it)
///   confirmDeadline   = orderDeadline + deployWindow (so an order accepted in time always
///                       leaves the winner its whole deploy window)
///   challengeDeadline = confirmation time + challengeWindow.
/// Every window is bounded at announce time (MIN_/MAX_ constants below), carried in the
/// ServiceAnnounced event, and the whole schedule must fit uint40 seconds at announce and at
/// each new round, so no deadline can wrap.
///
/// Winner: the lowest price of the current round; among equal prices the lowest
/// keccak256(abi.encode(id, bidder)). That is a total order over the bids, so the winner is the
/// minimum over the set of bids mined up to the end of the closing block, whatever their order
/// inside that block (a bid with a higher fee in the k-th bid's block cannot decide it).
///
/// Bonds: each bidder posts `bond = ceil(maxPrice / BOND_DIVISOR)` with its first bid on a
/// service (msg.value; later bids on the same service need none while it is held). A winner
/// that does not confirm after the consumer ordered on-chain (it declines, or lets the confirm
/// deadline pass and the consumer reopens or cancels) forfeits its bond to the consumer. Without
/// an on-chain order the winner keeps it (a consumer cannot earn bonds by never ordering). The
/// winner's bond comes back with the settlement (acknowledge/settle/terminate); every other
/// bond is reclaimed by its bidder (`reclaimBond`, pull) once its bid can no longer win: it is
/// not a live bid of an open round and not the current winner's.
///
/// Rounds: every round is open to every member but the consumer and the winners excluded by an
/// earlier decline/reopen, and closes at its k-th distinct bidder (+ the rest of that block) or
/// at its deadline. Money: every path ends with each wei creditable to someone (`withdraw`).
///
/// MAJORITY admission: approvals count only within one membership epoch (incremented by every
/// admission and departure); a change of membership restarts the count of every application,
/// so votes of members who left never count towards a smaller majority.
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
///   AlreadyApproved()                 second approval by the same member in this epoch
///                                                                          (ALREADY_EXISTS)
///   EscrowMismatch()                  msg.value != maxPrice                (INVALID_ARGUMENT)
///   InvalidK()                        k not in 1..MAX_K                    (INVALID_ARGUMENT)
///   InvalidWindow()                   a window outside its bounds, or a schedule beyond
///                                     type(uint40).max                     (INVALID_ARGUMENT)
///   RequirementsTooLong()             requirements > MAX_REQUIREMENTS      (INVALID_ARGUMENT)
///   PayloadTooLong()                  sealed endpoint > MAX_SEALED         (INVALID_ARGUMENT)
///   UnknownService()                  no service with this id              (NOT_FOUND)
///   WrongState(uint8 expected, uint8 actual)  effective state differs      (FAILED_PRECONDITION)
///   NotConsumer()                     consumer-only function               (PERMISSION_DENIED)
///   OwnService()                      consumer bidding on its own service  (PERMISSION_DENIED)
///   BiddingClosed()                   bid at/after the bidding deadline, or after the closing
///                                     block                                (DEADLINE_EXCEEDED)
///   PriceOutOfRange()                 price == 0 or price > maxPrice       (INVALID_ARGUMENT)
///   BidNotLower()                     re-bid not strictly lower than own live bid
///                                                                          (FAILED_PRECONDITION)
///   NotEligible()                     a winner excluded by decline/reopen  (PERMISSION_DENIED)
///   BondMismatch()                    msg.value != the bond due            (INVALID_ARGUMENT)
///   DeadlineNotPassed()               award/reopen/settle too early        (FAILED_PRECONDITION)
///   NoBids()                          award with no bids                   (FAILED_PRECONDITION)
///   NotWinner()                       confirm/decline by someone else than the winner
///                                                                          (PERMISSION_DENIED)
///   OrderWindowOver()                 consumer's order after the order deadline
///                                                                          (DEADLINE_EXCEEDED)
///   ConfirmWindowOver()               confirm after the confirm deadline   (DEADLINE_EXCEEDED)
///   NotParty()                        terminate by a third party           (PERMISSION_DENIED)
///   TooManyRounds()                   reopen/decline beyond 65535 rounds   (RESOURCE_EXHAUSTED)
///   NoBond()                          reclaimBond without a held bond      (FAILED_PRECONDITION)
///   BondLocked()                      reclaimBond while the bid can still win or is the
///                                     unsettled winner's                   (FAILED_PRECONDITION)
///   NothingToWithdraw()               withdraw with zero credit            (FAILED_PRECONDITION)
///   TransferFailed()                  withdraw transfer reverted           (INTERNAL)
///   Reentrancy()                      re-entered withdraw                  (ABORTED)
contract Federation {
    // ------------------------------------------------------------------ types / constants

    enum Policy { ALLOWLIST, MAJORITY }
    enum State { None, Open, Awarded, Deployed, Terminated, Cancelled, Closing, Acknowledged }

    uint256 internal constant MAX_NAME = 64;
    uint256 internal constant MAX_REQUIREMENTS = 1024;
    uint256 internal constant MAX_SEALED = 256;
    uint256 internal constant MAX_K = type(uint8).max;
    // Windows (seconds). Minimums: bids need a few blocks; the consumer's hand-off is immediate
    // after the close but must survive a slow block; a deployment needs tens of seconds; the
    // consumer's traffic check must fit before the price is released by default.
    uint256 internal constant MIN_BIDDING_WINDOW = 2;
    uint256 internal constant MAX_BIDDING_WINDOW = 1 days;
    uint256 internal constant MIN_ORDER_WINDOW = 10;
    uint256 internal constant MAX_ORDER_WINDOW = 1 days;
    uint256 internal constant MIN_DEPLOY_WINDOW = 30;
    uint256 internal constant MAX_DEPLOY_WINDOW = 1 days;
    uint256 internal constant MIN_CHALLENGE_WINDOW = 30;
    uint256 internal constant MAX_CHALLENGE_WINDOW = 30 days;
    /// bond = ceil(maxPrice / BOND_DIVISOR) (>= 1 wei)
    uint256 internal constant BOND_DIVISOR = 10;
    uint16 internal constant MAX_ROUND = type(uint16).max;

    /// @dev One slot per member address; never deleted, so `index` and `nonce` are stable.
    struct Member {
        uint32 index;        // 1-based, assigned on first registration, never reassigned
        bool active;         // currently a member
        bool allowed;        // ALLOWLIST: on the list; MAJORITY: founder / admitted
        uint32 approvals;    // MAJORITY: approvals of the current application in `epoch`
        uint32 application;  // MAJORITY: application counter (invalidates stale approvals)
        uint64 nonce;        // announcements made as consumer (service id input)
        bool pending;        // MAJORITY: has a pending application
        uint32 epoch;        // MAJORITY: membership epoch in which `approvals` were counted
    }

    /// @dev The hot auction state of a service: exactly one slot (96+32+40+40+16+16+8+8 bits),
    ///      read once and written once by a bid. The winner is the member index `best`.
    struct Auction {
        uint96 bestPrice;      // best bid of the current round (0 while bidCount == 0)
        uint32 best;           // member index of the best bidder (0 while bidCount == 0)
        uint40 deadline;       // bidding deadline; the closing block's timestamp once Closing
        uint40 closeBlock;     // block of the k-th bid (0 unless the quorum closed the round)
        uint16 bidCount;       // distinct bidders in the current round
        uint16 round;          // 0, +1 per reopen/decline (= number of excluded winners)
        uint8 k;               // distinct bidders that close a round
        State state;           // stored state (see `_effective`)
    }

    /// @dev The announced windows and the settlement state: one slot, written by announce.
    struct Terms {
        uint32 biddingWindow;      // length of a declined round
        uint32 orderWindow;
        uint32 deployWindow;
        uint32 challengeWindow;
        uint40 challengeDeadline;  // set by confirmDeployment
        bool ordered;              // the consumer's order of this round is on-chain
    }

    /// @dev A service: three slots (consumer/maxPrice, auction word, terms).
    struct Service {
        address consumer;
        uint96 maxPrice;       // escrowed by announce
        Auction auction;
        Terms terms;
    }

    /// @dev Per (service, provider) bid slot.
    struct Bid {
        uint96 price;   // last price bid (0 = never bid)
        uint16 round;   // round of that bid; the bid is live iff round == service round
        bool excluded;  // winner of an earlier round that did not deploy (reopen/decline)
        bool bonded;    // holds a bond in the contract
    }

    /// @dev View struct returned by `serviceOf`.
    struct ServiceView {
        address consumer;
        uint96 maxPrice;
        uint96 bond;
        uint16 k;
        uint16 bidCount;
        State state;             // effective state
        uint64 deadline;         // bidding deadline (closeTime once the k-th bid closed it)
        uint64 closeBlock;       // block of the k-th bid (0 if none)
        uint64 orderDeadline;    // 0 while effectively Open
        uint64 confirmDeadline;  // 0 while effectively Open
        uint64 challengeDeadline;  // 0 until confirmed
        address winner;          // best bidder so far (0 without bids)
        uint96 bestPrice;        // 0 without bids
        uint16 round;
        uint32 biddingWindow;
        uint32 orderWindow;
        uint32 deployWindow;
        uint32 challengeWindow;
        bool ordered;
    }

    // ------------------------------------------------------------------ storage

    Policy public immutable membershipPolicy;
    address public immutable admin;

    uint32 public totalMembers;
    uint32 private _lastIndex;
    /// MAJORITY: +1 per admission and departure (restarts every application's count)
    uint32 public membershipEpoch;

    mapping(address => Member) private _members;
    mapping(uint32 => address) private _memberAt;
    mapping(address => bytes32[2]) private _keys;
    mapping(address => string) private _names;
    /// approver => applicant => (application counter << 32 | epoch) approved
    mapping(address => mapping(address => uint64)) private _approved;

    mapping(bytes32 => Service) private _services;
    mapping(bytes32 => mapping(address => Bid)) private _bids;

    /// @dev Pull-payment credits, stored as amount + 1 once initialised (at admission), so that
    ///      crediting a member rewrites a non-zero slot (5k gas, not 22k).
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
        uint32 orderWindow,
        uint32 deployWindow,
        uint32 challengeWindow,
        uint96 bond,
        bytes requirements
    );
    event BidPlaced(
        bytes32 indexed id,
        address indexed provider,
        address indexed consumer,
        uint96 price,
        bytes sealedEndpoint
    );
    /// @dev The k-th distinct bid: bids mined in `closeBlock` still compete; the winner is
    ///      final once that block is (read it with `serviceOf`).
    event ServiceClosing(bytes32 indexed id, address indexed consumer, uint64 closeBlock);
    event ServiceAwarded(
        bytes32 indexed id, address indexed consumer, address indexed provider, uint96 price
    );
    event ConsumerEndpoint(
        bytes32 indexed id, address indexed consumer, address indexed provider, bytes sealedEndpoint
    );
    event DeploymentConfirmed(
        bytes32 indexed id, address indexed consumer, address indexed provider, bytes sealedEndpoint
    );
    /// @dev The price is the provider's: by the consumer's acknowledgement or by `settle`.
    event ServiceAcknowledged(
        bytes32 indexed id, address indexed consumer, address indexed provider, uint96 price
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
    /// @dev `refunded`: ended inside the challenge window (a complaint): escrow back to the
    ///      consumer, no price paid.
    event ServiceTerminated(bytes32 indexed id, address indexed by, bool refunded);
    event BondForfeited(bytes32 indexed id, address indexed provider, address indexed consumer, uint96 bond);
    event BondReclaimed(bytes32 indexed id, address indexed provider, uint96 bond);
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
    error BondMismatch();
    error DeadlineNotPassed();
    error NoBids();
    error NotWinner();
    error OrderWindowOver();
    error ConfirmWindowOver();
    error NotParty();
    error TooManyRounds();
    error NoBond();
    error BondLocked();
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
            m.epoch = membershipEpoch;
            m.pending = true;
            emit MemberApplied(msg.sender, name, pubkey);
        }
    }

    /// @notice MAJORITY: an active member approves a pending applicant; the applicant is
    ///         admitted once approvals > totalMembers / 2. Approvals count within one membership
    ///         epoch only: any admission or departure restarts the count, so a vote of a member
    ///         who has since left never counts towards the (smaller) majority.
    function approve(address applicant) external {
        if (membershipPolicy != Policy.MAJORITY) revert WrongPolicy();
        if (!_members[msg.sender].active) revert NotMember();
        Member storage m = _members[applicant];
        if (m.active) revert AlreadyMember();
        if (!m.pending) revert NotApplicant();
        uint32 epoch = membershipEpoch;
        uint64 ballot = (uint64(m.application) << 32) | epoch;
        if (_approved[msg.sender][applicant] == ballot) revert AlreadyApproved();
        _approved[msg.sender][applicant] = ballot;
        uint32 approvals = m.epoch == epoch ? m.approvals + 1 : 1;
        m.approvals = approvals;
        m.epoch = epoch;
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
        membershipEpoch += 1;
        bytes32[2] storage k = _keys[account];
        emit MemberJoined(account, _names[account], abi.encodePacked(k[0], k[1]));
    }

    function _removeMember(address account, Member storage m) private {
        m.active = false;
        totalMembers -= 1;
        membershipEpoch += 1;
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

    /// @return pending application pending, approvals of that application that still count
    ///         (those of the current membership epoch).
    function applicationStatus(address account) external view returns (bool pending, uint32 approvals) {
        Member storage m = _members[account];
        return (m.pending, !m.pending || m.epoch == membershipEpoch ? m.approvals : 0);
    }

    /// @notice The nonce the next announcement of `consumer` will use.
    function nonceOf(address consumer) external view returns (uint64) {
        return _members[consumer].nonce;
    }

    function credits(address account) external view returns (uint256) {
        uint256 c = _credits[account];
        return c == 0 ? 0 : c - 1;
    }

    /// @return maxName, maxRequirements, maxSealed (bytes), maxK, and the bounds (seconds) of
    ///         the bidding, order, deploy and challenge windows (min, max each), bondDivisor.
    function limits() external pure returns (uint256[13] memory) {
        return [
            MAX_NAME,
            MAX_REQUIREMENTS,
            MAX_SEALED,
            MAX_K,
            MIN_BIDDING_WINDOW,
            MAX_BIDDING_WINDOW,
            MIN_ORDER_WINDOW,
            MAX_ORDER_WINDOW,
            MIN_DEPLOY_WINDOW,
            MAX_DEPLOY_WINDOW,
            MIN_CHALLENGE_WINDOW,
            MAX_CHALLENGE_WINDOW,
            BOND_DIVISOR
        ];
    }

    function _credit(address account, uint256 amount) internal {
        uint256 c = _credits[account];
        _credits[account] = (c == 0 ? 1 : c) + amount;
    }

    // ------------------------------------------------------------------ auction

    /// @notice Announce a service. `msg.value` must equal `maxPrice` (escrow). Windows in
    ///         seconds, each within its MIN_/MAX_ bounds (see the header for the schedule).
    /// @return id keccak256(abi.encode(chainid, this, consumer, consumerNonce)).
    function announce(
        uint96 maxPrice,
        uint16 k,
        uint32 biddingWindow,
        uint32 orderWindow,
        uint32 deployWindow,
        uint32 challengeWindow,
        bytes calldata requirements
    ) external payable returns (bytes32 id) {
        Member storage m = _members[msg.sender];
        if (!m.active) revert NotMember();
        if (msg.value != maxPrice) revert EscrowMismatch();
        if (maxPrice == 0) revert PriceOutOfRange();
        if (k == 0 || k > MAX_K) revert InvalidK();
        _checkWindow(biddingWindow, MIN_BIDDING_WINDOW, MAX_BIDDING_WINDOW);
        _checkWindow(orderWindow, MIN_ORDER_WINDOW, MAX_ORDER_WINDOW);
        _checkWindow(deployWindow, MIN_DEPLOY_WINDOW, MAX_DEPLOY_WINDOW);
        _checkWindow(challengeWindow, MIN_CHALLENGE_WINDOW, MAX_CHALLENGE_WINDOW);
        if (requirements.length > MAX_REQUIREMENTS) revert RequirementsTooLong();
        Terms memory t = Terms({
            biddingWindow: biddingWindow,
            orderWindow: orderWindow,
            deployWindow: deployWindow,
            challengeWindow: challengeWindow,
            challengeDeadline: 0,
            ordered: false
        });
        id = _create(m, maxPrice, k, t);
        _announced(id, maxPrice, k, t, requirements);
    }

    function _announced(bytes32 id, uint96 maxPrice, uint16 k, Terms memory t, bytes calldata req)
        private
    {
        emit ServiceAnnounced(
            id,
            msg.sender,
            maxPrice,
            k,
            _services[id].auction.deadline,
            t.orderWindow,
            t.deployWindow,
            t.challengeWindow,
            _bondOf(maxPrice),
            req
        );
    }

    /// @dev The new service of announce (its id: the consumer's next nonce).
    function _create(Member storage m, uint96 maxPrice, uint16 k, Terms memory t)
        private
        returns (bytes32 id)
    {
        uint40 deadline = _scheduleFrom(t.biddingWindow, t);
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
            closeBlock: 0,
            bidCount: 0,
            round: 0,
            // casting to 'uint8' is safe because k <= MAX_K = type(uint8).max was checked
            // forge-lint: disable-next-line(unsafe-typecast)
            k: uint8(k),
            state: State.Open
        });
        s.terms = t;
    }

    /// @notice Bid `price` on service `id`; the first bid of a provider on a service carries
    ///         the bond (msg.value == bond, see `serviceOf`), later ones none. The k-th distinct
    ///         bidder of a round marks it Closing: bids mined in the same block still compete,
    ///         later ones are refused. A re-bid must be strictly lower than one's own live bid.
    function bid(bytes32 id, uint96 price, bytes calldata sealedEndpoint) external payable {
        if (sealedEndpoint.length > MAX_SEALED) revert PayloadTooLong();
        Member storage m = _members[msg.sender];
        if (!m.active) revert NotMember();
        Service storage s = _services[id];
        Auction memory a = s.auction;
        if (a.state == State.Closing) {
            if (block.number != a.closeBlock) revert BiddingClosed();
        } else {
            _requireState(a.state, State.Open);
            if (block.timestamp >= a.deadline) revert BiddingClosed();
        }
        address consumer = s.consumer;
        uint96 maxPrice = s.maxPrice;
        if (price == 0 || price > maxPrice) revert PriceOutOfRange();
        if (consumer == msg.sender) revert OwnService();
        bool newBidder = _recordBid(id, a.round, price, _bondOf(maxPrice));
        if (a.bidCount == 0 || _beats(id, price, msg.sender, a.bestPrice, a.best)) {
            a.bestPrice = price;
            a.best = m.index;
        }
        emit BidPlaced(id, msg.sender, consumer, price, sealedEndpoint);
        if (newBidder) {
            a.bidCount += 1; // checked: more distinct bidders than 65535 revert
            if (a.state == State.Open && a.bidCount == a.k) {
                a.state = State.Closing;
                a.closeBlock = _toTime(block.number);
                // The round's closeTime: its order and confirm deadlines start here.
                a.deadline = _toTime(block.timestamp);
                emit ServiceClosing(id, consumer, a.closeBlock);
            }
        }
        s.auction = a;
    }

    /// @notice Consumer records the award of a round that closed (deadline with >= 1 bid, or
    ///         the block after the closing block). Optional: such a round already counts as
    ///         Awarded.
    function award(bytes32 id) external {
        (address consumer,) = _consumerOnly(id);
        Service storage s = _services[id];
        Auction memory a = s.auction;
        if (a.state != State.Open && a.state != State.Closing) {
            revert WrongState(uint8(State.Open), uint8(a.state));
        }
        State st = _effective(s, a);
        if (st != State.Awarded) {
            if (a.bidCount == 0) revert NoBids();
            revert DeadlineNotPassed();
        }
        s.auction.state = State.Awarded;
        emit ServiceAwarded(id, consumer, _memberAt[a.best], a.bestPrice);
    }

    /// @notice Consumer sends its own (sealed) order to the winner, until the order deadline;
    ///         calldata/event only. Marks the round "ordered": from then on a winner that does
    ///         not confirm forfeits its bond.
    function sendConsumerEndpoint(bytes32 id, bytes calldata sealedEndpoint) external {
        if (sealedEndpoint.length > MAX_SEALED) revert PayloadTooLong();
        (address consumer,) = _consumerOnly(id);
        Service storage s = _services[id];
        Auction memory a = s.auction;
        State st = _effective(s, a);
        if (st != State.Awarded) revert WrongState(uint8(State.Awarded), uint8(st));
        Terms memory t = s.terms;
        if (block.timestamp > _orderDeadline(a, t)) revert OrderWindowOver();
        if (!t.ordered) s.terms.ordered = true;
        emit ConsumerEndpoint(id, consumer, _memberAt[a.best], sealedEndpoint);
    }

    /// @notice Winner confirms the deployment, until the confirm deadline. Nothing is paid yet:
    ///         the challenge window starts (see acknowledge/settle/terminate).
    function confirmDeployment(bytes32 id, bytes calldata sealedEndpoint) external {
        if (sealedEndpoint.length > MAX_SEALED) revert PayloadTooLong();
        Service storage s = _services[id];
        Auction memory a = s.auction;
        _requireState(_effective(s, a), State.Awarded);
        Member storage m = _members[msg.sender];
        if (!m.active) revert NotMember();
        if (m.index != a.best) revert NotWinner();
        Terms memory t = s.terms;
        if (block.timestamp > _confirmDeadline(a, t)) revert ConfirmWindowOver();
        s.auction.state = State.Deployed;
        // Fits: the schedule was checked against uint40 when this round started.
        s.terms.challengeDeadline = _toTime(block.timestamp + t.challengeWindow);
        emit DeploymentConfirmed(id, s.consumer, msg.sender, sealedEndpoint);
    }

    /// @notice Consumer acknowledges the deployment (its traffic check passed): the winner is
    ///         credited its price and bond, the consumer maxPrice - price.
    function acknowledge(bytes32 id) external {
        _consumerOnly(id);
        Service storage s = _services[id];
        Auction memory a = s.auction;
        if (a.state != State.Deployed) revert WrongState(uint8(State.Deployed), uint8(_effective(s, a)));
        _pay(id, s, a);
    }

    /// @notice Anyone books the payment of a deployment whose challenge window passed without
    ///         the consumer's complaint (the winner is credited its price and bond).
    function settle(bytes32 id) external {
        Service storage s = _services[id];
        Auction memory a = s.auction;
        _requireState(a.state, State.Deployed);
        if (block.timestamp <= s.terms.challengeDeadline) revert DeadlineNotPassed();
        _pay(id, s, a);
    }

    /// @notice The winner declines an award it cannot deploy (before confirming; also after
    ///         its confirm deadline). It is excluded and a new round starts at once, for the
    ///         announced bidding window; after the consumer's on-chain order its bond is the
    ///         consumer's.
    function decline(bytes32 id) external {
        Service storage s = _services[id];
        Auction memory a = s.auction;
        _requireState(_effective(s, a), State.Awarded);
        // A non-member has index 0, and an awarded auction has a best bidder (index >= 1).
        // A winner that left the federation may still decline.
        if (_members[msg.sender].index != a.best) revert NotWinner();
        Terms memory t = s.terms;
        _newRound(id, s, a, t, t.biddingWindow);
    }

    /// @notice Consumer cancels before the winner confirmed: the escrow is credited back. After
    ///         the consumer's on-chain order and the confirm deadline, the winner's bond too
    ///         (it failed); otherwise the winner reclaims its bond.
    function cancel(bytes32 id) external {
        (address consumer, uint96 maxPrice) = _consumerOnly(id);
        Service storage s = _services[id];
        Auction memory a = s.auction;
        State st = _effective(s, a);
        if (st != State.Open && st != State.Closing && st != State.Awarded) {
            revert WrongState(uint8(State.Open), uint8(st));
        }
        s.auction.state = State.Cancelled;
        _credit(consumer, maxPrice);
        if (st == State.Awarded) {
            Terms memory t = s.terms;
            if (t.ordered && block.timestamp > _confirmDeadline(a, t)) _forfeit(id, s, a);
        }
        emit ServiceCancelled(id, consumer);
    }

    /// @notice Consumer reopens an awarded auction whose winner did not confirm in time.
    ///         The failed winner is excluded (and forfeits its bond if the consumer ordered
    ///         on-chain); every other member may bid for `biddingWindow`.
    function reopen(bytes32 id, uint32 biddingWindow) external {
        _consumerOnly(id);
        _checkWindow(biddingWindow, MIN_BIDDING_WINDOW, MAX_BIDDING_WINDOW);
        Service storage s = _services[id];
        Auction memory a = s.auction;
        State st = _effective(s, a);
        if (st != State.Awarded) revert WrongState(uint8(State.Awarded), uint8(st));
        Terms memory t = s.terms;
        if (block.timestamp <= _confirmDeadline(a, t)) revert DeadlineNotPassed();
        _newRound(id, s, a, t, biddingWindow);
    }

    /// @notice Consumer or winner ends a deployed federation. Inside the challenge window (not
    ///         acknowledged) this is the consumer's complaint: the whole escrow goes back to the
    ///         consumer, the winner gets its bond back and no price. After the acknowledgement
    ///         (or the challenge window) the payment stands.
    function terminate(bytes32 id) external {
        Service storage s = _services[id];
        Auction memory a = s.auction;
        State st = _effective(s, a);
        if (st != State.Deployed && st != State.Acknowledged) {
            _requireState(st, State.Deployed);
        }
        address winner = _memberAt[a.best];
        address consumer = s.consumer;
        if (msg.sender != consumer && msg.sender != winner) revert NotParty();
        bool refunded = st == State.Deployed;
        if (refunded) {
            _credit(consumer, s.maxPrice);
            _releaseBond(id, winner, _bondOf(s.maxPrice));
        } else if (a.state == State.Deployed) {
            _pay(id, s, a); // the challenge window passed: the price is the winner's
        }
        s.auction.state = State.Terminated;
        emit ServiceTerminated(id, msg.sender, refunded);
    }

    /// @notice A bidder takes back its bond (credited, then `withdraw`) once its bid can no
    ///         longer win: not a live bid of an open (or closing) round, and not the bid of the
    ///         winner of an unsettled award or deployment.
    function reclaimBond(bytes32 id) external {
        Bid storage b = _bids[id][msg.sender];
        if (!b.bonded) revert NoBond();
        Service storage s = _services[id];
        Auction memory a = s.auction;
        State st = _effective(s, a);
        bool live = b.round == a.round;
        if (live) {
            if (st == State.Open || st == State.Closing) revert BondLocked();
            bool unsettled = st == State.Awarded || a.state == State.Deployed;
            if (unsettled && _members[msg.sender].index == a.best) revert BondLocked();
        }
        b.bonded = false;
        uint96 bond = _bondOf(s.maxPrice);
        _credit(msg.sender, bond);
        emit BondReclaimed(id, msg.sender, bond);
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

    /// @notice Effective state (see the header).
    function stateOf(bytes32 id) external view returns (State) {
        Service storage s = _services[id];
        return _effective(s, s.auction);
    }

    function serviceOf(bytes32 id) external view returns (ServiceView memory v) {
        Service storage s = _services[id];
        Auction memory a = s.auction;
        Terms memory t = s.terms;
        State st = _effective(s, a);
        v.consumer = s.consumer;
        v.maxPrice = s.maxPrice;
        v.bond = _bondOf(s.maxPrice);
        v.k = a.k;
        v.bidCount = a.bidCount;
        v.state = st;
        v.deadline = a.deadline;
        v.closeBlock = a.closeBlock;
        v.round = a.round;
        v.biddingWindow = t.biddingWindow;
        v.orderWindow = t.orderWindow;
        v.deployWindow = t.deployWindow;
        v.challengeWindow = t.challengeWindow;
        v.challengeDeadline = t.challengeDeadline;
        v.ordered = t.ordered;
        if (a.bidCount != 0) {
            v.winner = _memberAt[a.best];
            v.bestPrice = a.bestPrice;
        }
        if (st != State.None && st != State.Open) {
            v.orderDeadline = _orderDeadline(a, t);
            v.confirmDeadline = _confirmDeadline(a, t);
        }
    }

    /// @return price last price bid by `provider` (0 = never), round of that bid,
    ///         live (bid belongs to the current round), excluded (failed winner earlier),
    ///         bonded (its bond is held).
    function bidOf(bytes32 id, address provider)
        external
        view
        returns (uint96 price, uint16 round, bool live, bool excluded, bool bonded)
    {
        Bid storage b = _bids[id][provider];
        price = b.price;
        round = b.round;
        excluded = b.excluded;
        bonded = b.bonded;
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
            if (st == State.None) revert UnknownService();
            revert WrongState(uint8(want), uint8(st));
        }
    }

    function _checkWindow(uint32 window, uint256 lo, uint256 hi) private pure {
        if (window < lo || window > hi) revert InvalidWindow();
    }

    /// @dev ceil(maxPrice / BOND_DIVISOR): >= 1 wei for every maxPrice >= 1.
    function _bondOf(uint96 maxPrice) private pure returns (uint96) {
        // casting to 'uint96' is safe because the quotient is at most maxPrice
        // forge-lint: disable-next-line(unsafe-typecast)
        return uint96((uint256(maxPrice) + BOND_DIVISOR - 1) / BOND_DIVISOR);
    }

    /// @dev Whether a bid of `price` by `bidder` beats the best bid (`bestPrice` by member index
    ///      `best`): lower price, or the same price and a lower keccak256(id, bidder). A total
    ///      order, so the best of a set of bids does not depend on the order they came in.
    function _beats(bytes32 id, uint96 price, address bidder, uint96 bestPrice, uint32 best)
        private
        view
        returns (bool)
    {
        if (price != bestPrice) return price < bestPrice;
        address holder = _memberAt[best];
        if (holder == bidder) return false;
        return keccak256(abi.encode(id, bidder)) < keccak256(abi.encode(id, holder));
    }

    /// @dev Records msg.sender's bid of `price` in `round` and takes its bond if it holds none;
    ///      returns whether it is the sender's first bid of the round (a new distinct bidder).
    function _recordBid(bytes32 id, uint16 round, uint96 price, uint96 bond)
        private
        returns (bool newBidder)
    {
        Bid memory prev = _bids[id][msg.sender];
        if (prev.excluded) revert NotEligible();
        newBidder = prev.price == 0 || prev.round != round;
        if (!newBidder && price >= prev.price) revert BidNotLower();
        if (msg.value != (prev.bonded ? 0 : bond)) revert BondMismatch();
        _bids[id][msg.sender] = Bid({price: price, round: round, excluded: false, bonded: true});
    }

    /// @dev Credits the winner its price (and its bond), the consumer the rest of the escrow.
    function _pay(bytes32 id, Service storage s, Auction memory a) private {
        address winner = _memberAt[a.best];
        address consumer = s.consumer;
        uint96 maxPrice = s.maxPrice;
        uint96 price = a.bestPrice;
        s.auction.state = State.Acknowledged;
        _credit(winner, price);
        _releaseBond(id, winner, _bondOf(maxPrice));
        uint96 refund = maxPrice - price; // price <= maxPrice (bid guard)
        if (refund != 0) _credit(consumer, refund);
        emit ServiceAcknowledged(id, consumer, winner, price);
    }

    /// @dev Credits `provider` its held bond on `id` (if any).
    function _releaseBond(bytes32 id, address provider, uint96 bond) private {
        Bid storage b = _bids[id][provider];
        if (b.bonded) {
            b.bonded = false;
            _credit(provider, bond);
        }
    }

    /// @dev The current winner's held bond goes to the consumer.
    function _forfeit(bytes32 id, Service storage s, Auction memory a) private {
        address winner = _memberAt[a.best];
        Bid storage b = _bids[id][winner];
        if (!b.bonded) return;
        b.bonded = false;
        uint96 bond = _bondOf(s.maxPrice);
        _credit(s.consumer, bond);
        emit BondForfeited(id, winner, s.consumer, bond);
    }

    /// @dev Excludes the current winner (its bond forfeited if the consumer ordered) and starts
    ///      round + 1 (Open, no bids, open to every member not excluded) for `biddingWindow`
    ///      seconds from now. Shared by reopen and decline.
    function _newRound(
        bytes32 id,
        Service storage s,
        Auction memory a,
        Terms memory t,
        uint32 biddingWindow
    ) private {
        if (a.round == MAX_ROUND) revert TooManyRounds();
        uint16 round = a.round + 1;
        uint40 deadline = _scheduleFrom(biddingWindow, t);
        address excluded = _memberAt[a.best];
        _bids[id][excluded].excluded = true;
        if (t.ordered) {
            _forfeit(id, s, a);
            s.terms.ordered = false;
        }
        s.auction = Auction({
            bestPrice: 0,
            best: 0,
            deadline: deadline,
            closeBlock: 0,
            bidCount: 0,
            round: round,
            k: a.k,
            state: State.Open
        });
        emit ServiceReopened(id, s.consumer, excluded, round, deadline);
    }

    function _effective(Service storage s, Auction memory a) private view returns (State) {
        State st = a.state;
        if (st == State.Open) {
            if (block.timestamp >= a.deadline && a.bidCount != 0) return State.Awarded;
        } else if (st == State.Closing) {
            if (block.number > a.closeBlock) return State.Awarded;
        } else if (st == State.Deployed) {
            if (block.timestamp > s.terms.challengeDeadline) return State.Acknowledged;
        }
        return st;
    }

    /// @dev closeTime + orderWindow; < 2^41, so it never overflows uint64.
    function _orderDeadline(Auction memory a, Terms memory t) private pure returns (uint64) {
        return uint64(a.deadline) + t.orderWindow;
    }

    /// @dev orderDeadline + deployWindow: an order accepted in time leaves the whole window.
    function _confirmDeadline(Auction memory a, Terms memory t) private pure returns (uint64) {
        return _orderDeadline(a, t) + t.deployWindow;
    }

    /// @dev The bidding deadline now + `biddingWindow`, after checking that the whole schedule
    ///      of a round starting now (bidding, order, deploy, challenge) fits uint40 seconds, so
    ///      no later deadline of this round can wrap.
    function _scheduleFrom(uint32 biddingWindow, Terms memory t) private view returns (uint40) {
        uint256 deadline = block.timestamp + biddingWindow;
        _toTime(deadline + t.orderWindow + t.deployWindow + t.challengeWindow);
        return _toTime(deadline);
    }

    /// @dev Checked narrowing of a timestamp (or block number) to the stored width.
    function _toTime(uint256 t) private pure returns (uint40) {
        if (t > type(uint40).max) revert InvalidWindow();
        // casting to 'uint40' is safe because t <= type(uint40).max was checked above
        // forge-lint: disable-next-line(unsafe-typecast)
        return uint40(t);
    }
}
