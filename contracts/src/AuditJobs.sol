// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ModelRegistry} from "./ModelRegistry.sol";
import {NodeRegistry} from "./NodeRegistry.sol";
import {IRandomness} from "./IRandomness.sol";
import {JobEscrow} from "./JobEscrow.sol";
import {OutputMatching} from "./OutputMatching.sol";
import {StakeDraw} from "./StakeDraw.sol";

/// @title AuditJobs
/// @notice Secret random audits (Proof of Sampling, arXiv 2405.00295): one executor, drawn by stake over
/// the candidates frozen at submission, commits to a digest of its output. Only then, from the hash of
/// the block that included the commit (unknown when the executor signed it), the job is audited with
/// probability `auditBps` / 10000. An unaudited job settles as soon as the executor reveals. An audited
/// job draws `auditors` more nodes from the frozen candidates (never the executor), who execute blind and
/// commit before anyone may reveal; then the executor and the auditors reveal and a strict majority of all
/// k + 1 of them, grouped by the model's matching policy (OutputMatching, the quorum rule), decides. The
/// losers and no-shows are slashed; without a majority the user is refunded.
///
/// Why a majority among executor + auditors and not a fresh QuorumJobs sub-job: the k + 1 reveals are
/// exactly a quorum of k + 1 whose members were drawn by stake over the frozen list, executed blind and
/// committed before any reveal (the executor's reveal is refused until every auditor committed or the
/// window closed), tallied with the same OutputMatching rule as QuorumJobs._tally. A sub-job would draw
/// another k + 1 nodes to run the same input again and apply the same rule; it adds cost and latency but
/// no party that the first draw lacked. (With k = 2 a single liar, executor or auditor, is outvoted 2-1.)
///
/// Fees: a user pays `price + price * poolBps / 10000` whether or not its job is audited. The executor
/// earns `price`; the rest goes into the audit pool (part of the escrow), from which each auditor of an
/// audited job is paid up to `price`. With poolBps >= auditBps * auditors the pool is balanced on average.
///
/// Deadlines: commit (executor) `commitWindow` after assignment; the audit draw within `revealWindow`
/// blocks of the commit (anyone may draw; the executor is slashed if nobody did, so it cannot sit on a
/// draw it has seen to be an audit); the executor's reveal of an unaudited job within `revealWindow`;
/// auditors' commits within `commitWindow` of the audit draw, every reveal within `revealWindow` after it.
contract AuditJobs is JobEscrow {
    uint8 public constant MAX_AUDITORS = 8;
    uint256 public constant MAX_PARAMS_BYTES = 1024;

    enum Status {
        None,
        Submitted, // fee escrowed, waiting for the executor's draw
        Assigned, // executor drawn: it commits
        Committed, // executor committed: waiting for the audit draw (from a later block)
        Revealing, // not audited: the executor reveals and the job settles
        Auditing, // audited: auditors commit, then everyone reveals, then finalize
        Verified, // settled with a result
        Failed, // settled without one (no majority, or the executor missed a window); user refunded
        Refunded // never assigned; user refunded
    }

    struct Job {
        address user;
        address executor;
        bytes32 modelId;
        bytes32 inputHash;
        Status status;
        bool audited;
        uint8 policy;
        uint32 threshold;
        uint8 commits; // auditors' commits
        uint8 reveals; // reveals of an audited job (executor's included)
        uint64 submitBlock;
        uint64 commitBlock; // the block that included the executor's commit (its hash seeds the audit)
        uint64 deadline; // last block of the current window (commit, audit draw, or auditors' commit)
        uint64 revealDeadline; // last block in which a reveal is accepted (Revealing, Auditing)
        bytes32 candidatesHash;
        uint256 price; // the executor's pay (and an auditor's)
        uint256 fee; // price + the audit-pool contribution
        bytes32 resultDigest;
        bytes params;
    }

    struct Slot {
        bool assigned;
        bool revealed;
        bytes32 commitment;
        bytes32 digest;
    }

    uint64 public immutable commitWindow;
    uint64 public immutable revealWindow;
    uint256 public immutable auditBps; // probability of an audit, in basis points
    uint8 public immutable auditors; // k
    uint256 public immutable poolBps; // the audit-pool contribution, in basis points of the price

    /// Coin set aside to pay auditors (inside totalEscrow).
    uint256 public auditPool;

    mapping(uint256 => Job) private _jobs;
    mapping(uint256 => address[]) private _auditors;
    mapping(uint256 => mapping(address => Slot)) private _slots;

    event JobSubmitted(
        uint256 indexed jobId, address indexed user, bytes32 indexed modelId, bytes32 inputHash, uint256 fee, bytes params
    );
    event JobAssigned(uint256 indexed jobId, address indexed executor, uint64 commitDeadline);
    event Committed(uint256 indexed jobId, address indexed node, bytes32 commitment);
    event AuditDrawn(uint256 indexed jobId, bool audited, address[] auditors, uint64 commitDeadline, uint64 revealDeadline);
    event Revealed(uint256 indexed jobId, address indexed node, bytes32 digest, bytes32 outputKey);
    event JobSettled(
        uint256 indexed jobId, Status status, bytes32 digest, address[] paid, address[] slashed, uint256 refund
    );
    event PoolFunded(address indexed from, uint256 amount);

    error AuditorCount(uint8 k);
    error EmptyInputHash();
    error ParamsTooLong(uint256 length);
    error WindowTooLong(uint64 blocks);
    error CommitWindowClosed(uint256 jobId);
    error AlreadyCommitted(uint256 jobId);
    error ZeroCommitment();
    error NoCommit(uint256 jobId);
    error AlreadyRevealed(uint256 jobId);
    error CommitPhaseOpen(uint256 jobId);
    error RevealWindowClosed(uint256 jobId);
    error RevealMismatch(uint256 jobId);
    error RevealPhaseOpen(uint256 jobId);
    error AuditDrawTooEarly(uint256 jobId);
    error WindowOpen(uint256 jobId);
    error WindowClosedFor(uint256 jobId);

    constructor(
        ModelRegistry models_,
        NodeRegistry nodes_,
        IRandomness randomness_,
        uint64 commitWindow_,
        uint64 revealWindow_,
        uint256 auditBps_,
        uint8 auditors_,
        uint256 poolBps_,
        uint256 slashBps_,
        uint256 burnBps_
    ) JobEscrow(models_, nodes_, randomness_, slashBps_, burnBps_) {
        if (commitWindow_ == 0 || revealWindow_ == 0) revert ZeroWindow();
        // The audit draw reads the commit block's hash, which blockhash keeps for 256 blocks.
        if (revealWindow_ > 255) revert WindowTooLong(revealWindow_);
        if (auditBps_ > 10_000 || poolBps_ > 10_000) revert BpsAbove10000();
        if (auditors_ < 2 || auditors_ > MAX_AUDITORS || auditors_ % 2 != 0) revert AuditorCount(auditors_);
        commitWindow = commitWindow_;
        revealWindow = revealWindow_;
        auditBps = auditBps_;
        auditors = auditors_;
        poolBps = poolBps_;
    }

    // ---- users ----

    /// The fee of a job on `modelId`: its price plus the audit-pool contribution, audited or not.
    function feeOf(bytes32 modelId) public view returns (uint256) {
        uint256 p = _price(modelId);
        return p + (p * poolBps) / 10_000;
    }

    function submit(bytes32 modelId, bytes32 inputHash, bytes calldata params) external payable returns (uint256 jobId) {
        if (inputHash == bytes32(0)) revert EmptyInputHash();
        if (params.length > MAX_PARAMS_BYTES) revert ParamsTooLong(params.length);
        ModelRegistry.Model memory m = models.getModel(modelId);
        jobId = _openJob(modelId, feeOf(modelId));
        Job storage j = _jobs[jobId];
        j.user = msg.sender;
        j.modelId = modelId;
        j.inputHash = inputHash;
        j.status = Status.Submitted;
        j.policy = m.policy;
        j.threshold = m.threshold;
        j.submitBlock = uint64(block.number);
        j.price = m.price;
        j.fee = msg.value;
        j.params = params;
        emit JobSubmitted(jobId, msg.sender, modelId, inputHash, msg.value, params);
        // Enough candidates for an audit, whether or not this job gets one (so no job is unauditable).
        j.candidatesHash = _freezeCandidates(jobId, modelId, uint256(auditors) + 1);
    }

    /// Anyone may add coin to the audit pool.
    function fundPool() external payable {
        totalEscrow += msg.value;
        auditPool += msg.value;
        emit PoolFunded(msg.sender, msg.value);
    }

    // ---- the draws ----

    /// Draws the executor from the block after submission (anyone may call it).
    function assign(uint256 jobId, address[] calldata cands, uint256[] calldata frozenWeights) external nonReentrant {
        Job storage j = _jobs[jobId];
        _expect(jobId, Status.Submitted);
        address node = _drawOneOrRefund(jobId, j.submitBlock, j.candidatesHash, cands, frozenWeights, j.user, j.fee);
        if (node == address(0)) {
            j.status = Status.Refunded;
            return;
        }
        j.status = Status.Assigned;
        j.executor = node;
        j.deadline = uint64(block.number) + commitWindow;
        _slots[jobId][node].assigned = true;
        emit JobAssigned(jobId, node, j.deadline);
    }

    /// Decides, from the hash of the block that included the executor's commit, whether the job is
    /// audited, and if so draws the auditors (anyone may call it, from the block after the commit).
    function drawAudit(uint256 jobId, address[] calldata cands, uint256[] calldata frozenWeights) external nonReentrant {
        Job storage j = _jobs[jobId];
        _expect(jobId, Status.Committed);
        if (StakeDraw.digest(cands, frozenWeights) != j.candidatesHash) revert CandidatesDiffer(jobId);
        if (block.number <= j.commitBlock) revert AuditDrawTooEarly(jobId);
        if (block.number > j.deadline) revert WindowClosedFor(jobId);
        bytes32 seed = randomness.seed(jobId, j.commitBlock);
        bool audited = uint256(keccak256(abi.encode(seed, "audit"))) % 10_000 < auditBps;
        address[] memory drawn;
        if (audited) {
            (uint256[] memory weights,) = StakeDraw.liveWeights(nodes, cands, frozenWeights);
            uint256 eligible = 0;
            for (uint256 i = 0; i < cands.length; i++) {
                if (cands[i] == j.executor) weights[i] = 0;
                if (weights[i] > 0) eligible++;
            }
            // The unbonding delay outlasts the assignment horizon, so this should not happen; if it does, the
            // job settles unaudited rather than stalling (documented in docs/audit.md).
            if (eligible >= auditors) {
                drawn = StakeDraw.draw(cands, weights, auditors, keccak256(abi.encode(seed, "auditors")));
            } else {
                audited = false;
            }
        }
        j.audited = audited;
        if (audited) {
            j.status = Status.Auditing;
            j.deadline = uint64(block.number) + commitWindow;
            j.revealDeadline = j.deadline + revealWindow;
            for (uint256 i = 0; i < drawn.length; i++) {
                _auditors[jobId].push(drawn[i]);
                _slots[jobId][drawn[i]].assigned = true;
                nodes.lock(drawn[i]);
            }
        } else {
            j.status = Status.Revealing;
            j.revealDeadline = uint64(block.number) + revealWindow;
        }
        emit AuditDrawn(jobId, audited, drawn, j.deadline, j.revealDeadline);
    }


    // ---- nodes ----

    /// The executor's commit (Assigned) and the auditors' (Auditing) go through the same call.
    function commit(uint256 jobId, bytes32 commitment) external {
        Job storage j = _jobs[jobId];
        Slot storage s = _slots[jobId][msg.sender];
        if (j.status == Status.None) revert UnknownJob(jobId);
        if (j.status != Status.Assigned && j.status != Status.Auditing) revert WrongStatus(jobId, uint8(j.status));
        if (!s.assigned) revert NotAssigned(jobId, msg.sender);
        if (block.number > j.deadline) revert CommitWindowClosed(jobId);
        if (s.commitment != bytes32(0)) revert AlreadyCommitted(jobId);
        if (commitment == bytes32(0)) revert ZeroCommitment();
        s.commitment = commitment;
        if (j.status == Status.Assigned) {
            j.status = Status.Committed;
            j.commitBlock = uint64(block.number);
            j.deadline = uint64(block.number) + revealWindow; // the audit draw's window
        } else {
            j.commits += 1;
        }
        emit Committed(jobId, msg.sender, commitment);
    }

    /// Opens a commitment. Unaudited: the executor's reveal settles the job at once. Audited: reveals are
    /// taken only once every auditor committed (or their window closed), so nobody copies a revealed digest.
    function reveal(uint256 jobId, bytes32 digest, bytes32 salt, bytes32 outputKey) external nonReentrant {
        Job storage j = _jobs[jobId];
        Slot storage s = _slots[jobId][msg.sender];
        if (j.status == Status.None) revert UnknownJob(jobId);
        if (j.status != Status.Revealing && j.status != Status.Auditing) revert WrongStatus(jobId, uint8(j.status));
        if (!s.assigned) revert NotAssigned(jobId, msg.sender);
        if (s.commitment == bytes32(0)) revert NoCommit(jobId);
        if (s.revealed) revert AlreadyRevealed(jobId);
        if (j.status == Status.Auditing && j.commits != auditors && block.number <= j.deadline) {
            revert CommitPhaseOpen(jobId);
        }
        if (block.number > j.revealDeadline) revert RevealWindowClosed(jobId);
        if (commitmentOf(jobId, msg.sender, digest, salt) != s.commitment) revert RevealMismatch(jobId);
        s.revealed = true;
        s.digest = digest;
        emit Revealed(jobId, msg.sender, digest, outputKey);
        if (j.status == Status.Auditing) {
            j.reveals += 1;
            return;
        }
        // Unaudited: settle now. Effects, then the trusted registry.
        j.status = Status.Verified;
        j.resultDigest = digest;
        _release(j.price);
        auditPool += j.fee - j.price;
        nodes.unlock(j.executor);
        _credit(j.executor, jobId, j.price);
        address[] memory paid = new address[](1);
        paid[0] = j.executor;
        emit JobSettled(jobId, Status.Verified, digest, paid, new address[](0), 0);
    }

    /// Settles an audited job once every reveal is in or the reveal window has closed; anyone may call.
    function finalize(uint256 jobId) external nonReentrant {
        Job storage j = _jobs[jobId];
        _expect(jobId, Status.Auditing);
        uint256 n = uint256(auditors) + 1;
        if (j.reveals != n && block.number <= j.revealDeadline) revert RevealPhaseOpen(jobId);
        address[] memory voters = voterList(jobId);
        (bool majority, bytes32 digest, bool[] memory agree) = _tally(jobId, j, voters);

        // Effects before any external call.
        j.status = majority ? Status.Verified : Status.Failed;
        j.resultDigest = digest;
        _release(j.fee);
        (address[] memory paid, address[] memory slashed) = _split(voters, agree, majority, jobId);

        // Interactions with the trusted registry only.
        for (uint256 i = 0; i < voters.length; i++) {
            nodes.unlock(voters[i]);
        }
        uint256 slashedTotal = 0;
        for (uint256 i = 0; i < slashed.length; i++) {
            (, uint256 paidOn) = _slash(jobId, slashed[i]);
            slashedTotal += paidOn;
        }
        uint256 refund = majority ? _payMajority(jobId, j, paid, slashedTotal) : _payNoMajority(jobId, j, slashedTotal);
        emit JobSettled(jobId, j.status, digest, paid, slashed, refund);
    }

    /// Ends a job whose executor let a window lapse (commit, audit draw, or unaudited reveal): the executor
    /// is slashed, the user refunded and compensated (at most its fee). Anyone may call.
    function timeout(uint256 jobId) external nonReentrant {
        Job storage j = _jobs[jobId];
        Status s = j.status;
        if (s == Status.None) revert UnknownJob(jobId);
        if (s != Status.Assigned && s != Status.Committed && s != Status.Revealing) revert WrongStatus(jobId, uint8(s));
        uint64 last = s == Status.Revealing ? j.revealDeadline : j.deadline;
        if (block.number <= last) revert WindowOpen(jobId);
        j.status = Status.Failed;
        _release(j.fee);
        _credit(j.user, jobId, j.fee);
        nodes.unlock(j.executor);
        (, uint256 paidOn) = _slash(jobId, j.executor);
        uint256 comp = _compensate(jobId, j.user, j.fee, paidOn);
        address[] memory slashed = new address[](1);
        slashed[0] = j.executor;
        emit JobSettled(jobId, Status.Failed, bytes32(0), new address[](0), slashed, j.fee + comp);
    }

    // ---- views ----

    /// Bound to this chain, this contract, the job and the node (as QuorumJobs.commitmentOf).
    function commitmentOf(uint256 jobId, address node, bytes32 digest, bytes32 salt) public view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, address(this), jobId, node, digest, salt));
    }

    function getJob(uint256 jobId) external view returns (Job memory) {
        if (_jobs[jobId].status == Status.None) revert UnknownJob(jobId);
        return _jobs[jobId];
    }

    function auditorsOf(uint256 jobId) external view returns (address[] memory) {
        return _auditors[jobId];
    }

    /// The executor, then the auditors (empty before assignment).
    function voterList(uint256 jobId) public view returns (address[] memory voters) {
        address[] storage a = _auditors[jobId];
        address ex = _jobs[jobId].executor;
        voters = new address[](a.length + (ex == address(0) ? 0 : 1));
        if (ex == address(0)) return voters;
        voters[0] = ex;
        for (uint256 i = 0; i < a.length; i++) {
            voters[i + 1] = a[i];
        }
    }

    function slotOf(uint256 jobId, address node) external view returns (Slot memory) {
        return _slots[jobId][node];
    }

    function outcome(uint256 jobId) external view returns (Settlement settlement, bytes32 digest) {
        Status s = _jobs[jobId].status;
        if (s == Status.None) revert UnknownJob(jobId);
        if (s == Status.Verified) return (Settlement.Verified, _jobs[jobId].resultDigest);
        return (s == Status.Failed || s == Status.Refunded ? Settlement.Failed : Settlement.Open, bytes32(0));
    }

    // ---- internals ----

    function _expect(uint256 jobId, Status status) private view {
        Status s = _jobs[jobId].status;
        if (s == Status.None) revert UnknownJob(jobId);
        if (s != status) revert WrongStatus(jobId, uint8(s));
    }

    /// The quorum rule over executor + auditors: the largest cluster of matching reveals wins if it is a
    /// strict majority of all k + 1.
    function _tally(uint256 jobId, Job storage j, address[] memory voters)
        private
        view
        returns (bool majority, bytes32 digest, bool[] memory agree)
    {
        uint256 n = voters.length;
        bytes32[] memory digests = new bytes32[](n);
        bool[] memory revealed = new bool[](n);
        for (uint256 i = 0; i < n; i++) {
            Slot storage s = _slots[jobId][voters[i]];
            revealed[i] = s.revealed;
            digests[i] = s.digest;
        }
        (uint256 center, uint256 size) = OutputMatching.largestCluster(digests, revealed, j.policy, j.threshold);
        majority = size * 2 > n;
        agree = new bool[](n);
        if (!majority) return (false, bytes32(0), agree);
        digest = digests[center];
        for (uint256 i = 0; i < n; i++) {
            agree[i] = revealed[i] && OutputMatching.matches(j.policy, j.threshold, digest, digests[i]);
        }
    }

    /// With a majority: the agreeing are paid, everyone else slashed. Without: only non-revealers slashed.
    function _split(address[] memory voters, bool[] memory agree, bool majority, uint256 jobId)
        private
        view
        returns (address[] memory paid, address[] memory slashed)
    {
        uint256 np = 0;
        uint256 ns = 0;
        bool[] memory slash = new bool[](voters.length);
        for (uint256 i = 0; i < voters.length; i++) {
            slash[i] = majority ? !agree[i] : !_slots[jobId][voters[i]].revealed;
            if (agree[i]) np++;
            if (slash[i]) ns++;
        }
        paid = new address[](np);
        slashed = new address[](ns);
        (np, ns) = (0, 0);
        for (uint256 i = 0; i < voters.length; i++) {
            if (agree[i]) paid[np++] = voters[i];
            if (slash[i]) slashed[ns++] = voters[i];
        }
    }

    /// The fee was released from the escrow: the contribution goes to the pool, the executor's price to the
    /// executor if it agreed (else back to the user); each agreeing auditor gets up to `price` from the pool;
    /// the slashed stake (less its burned share) is shared by the agreeing, any remainder to the user.
    function _payMajority(uint256 jobId, Job storage j, address[] memory paid, uint256 slashedTotal)
        private
        returns (uint256 refund)
    {
        totalEscrow += j.fee - j.price; // the contribution stays in the escrow, as pool
        auditPool += j.fee - j.price;
        uint256 share = slashedTotal / paid.length;
        bool executorPaid = false;
        for (uint256 i = 0; i < paid.length; i++) {
            uint256 amount = share;
            if (paid[i] == j.executor) {
                executorPaid = true;
                amount += j.price;
            } else {
                uint256 fromPool = auditPool < j.price ? auditPool : j.price;
                auditPool -= fromPool;
                totalEscrow -= fromPool;
                amount += fromPool;
            }
            _credit(paid[i], jobId, amount);
        }
        refund = slashedTotal - share * paid.length + (executorPaid ? 0 : j.price);
        _credit(j.user, jobId, refund);
    }

    /// No majority: the user gets its whole fee back, plus compensation for no-shows (at most its fee).
    function _payNoMajority(uint256 jobId, Job storage j, uint256 slashedTotal) private returns (uint256 refund) {
        _credit(j.user, jobId, j.fee);
        refund = j.fee + _compensate(jobId, j.user, j.fee, slashedTotal);
    }
}
