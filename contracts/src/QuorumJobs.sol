// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ModelRegistry} from "./ModelRegistry.sol";
import {NodeRegistry} from "./NodeRegistry.sol";
import {IRandomness} from "./IRandomness.sol";
import {IJobOutcome} from "./IJobOutcome.sol";
import {JobEscrow} from "./JobEscrow.sol";
import {OutputMatching} from "./OutputMatching.sol";

/// @title QuorumJobs
/// @notice The quorum scheme: n staked nodes, drawn by stake in a block after submission, commit to a
/// digest of their output, reveal it, and a strict majority cluster of matching reveals wins the fee.
/// Dissenters and no-shows are slashed (the winners share what is not burned); without a majority the
/// user is refunded. A node that could not get the job's input reveals `INPUT_UNAVAILABLE`: that vote is
/// never slashed and never paid, so a submitter who publishes its input late cannot get honest early
/// nodes slashed. Escrow, credits, the draw and slashing live in JobEscrow.
contract QuorumJobs is JobEscrow {
    uint8 public constant MAX_QUORUM = 9;
    uint256 public constant MAX_PARAMS_BYTES = 1024;
    /// The digest a node commits when the job's input was not available to it.
    bytes32 public constant INPUT_UNAVAILABLE = keccak256("veriml: input unavailable");

    enum Status {
        None,
        Submitted, // fee escrowed, waiting for assignment
        Assigned, // nodes drawn: commit, then reveal
        Verified, // a strict majority agreed; winners paid
        Disputed, // reveals but no majority; user refunded
        Refunded // never assigned (too few nodes, randomness expired); user refunded
    }

    struct Job {
        address user;
        bytes32 modelId;
        bytes32 inputHash;
        uint8 n;
        Status status;
        uint8 policy; // snapshot of the model's policy at submission
        uint32 threshold;
        uint8 commits;
        uint8 reveals;
        uint64 submitBlock;
        uint64 commitDeadline; // last block in which a commit is accepted
        uint64 revealDeadline; // last block in which a reveal is accepted
        bytes32 candidatesHash; // the nodes eligible at submission and their stakes, frozen (see assign)
        uint256 fee;
        bytes32 resultDigest;
        bytes params;
    }

    struct Slot {
        bool assigned;
        bool revealed;
        bytes32 commitment;
        bytes32 digest;
    }

    uint64 public immutable commitWindow; // blocks
    uint64 public immutable revealWindow; // blocks

    mapping(uint256 => Job) private _jobs;
    mapping(uint256 => address[]) private _assigned;
    mapping(uint256 => mapping(address => Slot)) private _slots;

    event JobSubmitted(
        uint256 indexed jobId, address indexed user, bytes32 indexed modelId, bytes32 inputHash, uint8 n, uint256 fee,
        bytes params
    );
    event JobAssigned(uint256 indexed jobId, address[] nodes, uint64 commitDeadline, uint64 revealDeadline);
    event Committed(uint256 indexed jobId, address indexed node, bytes32 commitment);
    /// `outputKey` (sha256 of the output document, served at the node's endpoint) tells clients where to
    /// fetch the output; it is not committed to, because clients check what they fetch against `digest`.
    event Revealed(uint256 indexed jobId, address indexed node, bytes32 digest, bytes32 outputKey);
    event JobFinalized(
        uint256 indexed jobId, Status status, bytes32 digest, address[] winners, address[] slashed, uint256 refund
    );

    error QuorumSize(uint8 n);
    error EmptyInputHash();
    error ParamsTooLong(uint256 length);
    error CommitWindowClosed(uint256 jobId);
    error AlreadyCommitted(uint256 jobId);
    error ZeroCommitment();
    error NoCommit(uint256 jobId);
    error AlreadyRevealed(uint256 jobId);
    error CommitPhaseOpen(uint256 jobId);
    error RevealWindowClosed(uint256 jobId);
    error RevealMismatch(uint256 jobId);
    error RevealPhaseOpen(uint256 jobId);

    constructor(
        ModelRegistry models_,
        NodeRegistry nodes_,
        IRandomness randomness_,
        uint64 commitWindow_,
        uint64 revealWindow_,
        uint256 slashBps_,
        uint256 burnBps_
    ) JobEscrow(models_, nodes_, randomness_, slashBps_, burnBps_) {
        if (commitWindow_ == 0 || revealWindow_ == 0) revert ZeroWindow();
        commitWindow = commitWindow_;
        revealWindow = revealWindow_;
    }

    // ---- users ----

    function submit(bytes32 modelId, bytes32 inputHash, bytes calldata params, uint8 n)
        external
        payable
        returns (uint256 jobId)
    {
        if (n < 1 || n > MAX_QUORUM || n % 2 == 0) revert QuorumSize(n);
        if (inputHash == bytes32(0)) revert EmptyInputHash();
        if (params.length > MAX_PARAMS_BYTES) revert ParamsTooLong(params.length);
        ModelRegistry.Model memory m = models.getModel(modelId);
        jobId = _openJob(modelId, m.price * n);
        Job storage j = _jobs[jobId];
        j.user = msg.sender;
        j.modelId = modelId;
        j.inputHash = inputHash;
        j.n = n;
        j.status = Status.Submitted;
        j.policy = m.policy;
        j.threshold = m.threshold;
        j.submitBlock = uint64(block.number);
        j.fee = msg.value;
        j.params = params;
        emit JobSubmitted(jobId, msg.sender, modelId, inputHash, n, msg.value, params);
        j.candidatesHash = _freezeCandidates(jobId, modelId, n);
    }

    /// Draws the job's nodes; anyone may call it from the block after submission, passing the candidate
    /// list frozen at submission (from the CandidatesFrozen event). A job that can no longer be assigned
    /// (randomness expired, fewer than n candidates still registered) is refunded instead.
    function assign(uint256 jobId, address[] calldata cands, uint256[] calldata frozenWeights) external nonReentrant {
        Job storage j = _jobs[jobId];
        _expect(jobId, Status.Submitted);
        (address[] memory drawn, string memory refundReason) =
            _drawFrozen(jobId, j.submitBlock, j.candidatesHash, cands, frozenWeights, j.n);
        if (drawn.length == 0) {
            j.status = Status.Refunded;
            _refund(jobId, j.user, j.fee, refundReason);
            return;
        }
        j.status = Status.Assigned;
        j.commitDeadline = uint64(block.number) + commitWindow;
        j.revealDeadline = j.commitDeadline + revealWindow;
        for (uint256 i = 0; i < drawn.length; i++) {
            _assigned[jobId].push(drawn[i]);
            _slots[jobId][drawn[i]].assigned = true;
        }
        emit JobAssigned(jobId, drawn, j.commitDeadline, j.revealDeadline);
    }

    // ---- nodes ----

    function commit(uint256 jobId, bytes32 commitment) external {
        Job storage j = _jobs[jobId];
        Slot storage s = _slots[jobId][msg.sender];
        _expect(jobId, Status.Assigned);
        if (!s.assigned) revert NotAssigned(jobId, msg.sender);
        if (block.number > j.commitDeadline) revert CommitWindowClosed(jobId);
        if (s.commitment != bytes32(0)) revert AlreadyCommitted(jobId);
        if (commitment == bytes32(0)) revert ZeroCommitment();
        s.commitment = commitment;
        j.commits += 1;
        emit Committed(jobId, msg.sender, commitment);
    }

    /// Opens a commitment. Reveals are only taken once every commit is in (or the commit window has
    /// closed), so no assigned node can copy a revealed digest into its own commit.
    function reveal(uint256 jobId, bytes32 digest, bytes32 salt, bytes32 outputKey) external {
        Job storage j = _jobs[jobId];
        Slot storage s = _slots[jobId][msg.sender];
        _expect(jobId, Status.Assigned);
        if (!s.assigned) revert NotAssigned(jobId, msg.sender);
        if (s.commitment == bytes32(0)) revert NoCommit(jobId);
        if (s.revealed) revert AlreadyRevealed(jobId);
        if (j.commits != j.n && block.number <= j.commitDeadline) revert CommitPhaseOpen(jobId);
        if (block.number > j.revealDeadline) revert RevealWindowClosed(jobId);
        if (commitmentOf(jobId, msg.sender, digest, salt) != s.commitment) revert RevealMismatch(jobId);
        s.revealed = true;
        s.digest = digest;
        j.reveals += 1;
        emit Revealed(jobId, msg.sender, digest, outputKey);
    }

    /// Settles an assigned job once every reveal is in or the reveal window has closed; anyone may call.
    function finalize(uint256 jobId) external nonReentrant {
        Job storage j = _jobs[jobId];
        _expect(jobId, Status.Assigned);
        if (j.reveals != j.n && block.number <= j.revealDeadline) revert RevealPhaseOpen(jobId);

        address[] storage drawn = _assigned[jobId];
        (bool majority, bytes32 digest, bool[] memory agree, bool[] memory slashable) = _tally(jobId, j);
        uint256 winnerCount = 0;
        uint256 loserCount = 0;
        for (uint256 i = 0; i < drawn.length; i++) {
            if (agree[i]) winnerCount++;
            if (slashable[i]) loserCount++;
        }
        address[] memory winners = new address[](winnerCount);
        address[] memory losers = new address[](loserCount);
        {
            uint256 w = 0;
            uint256 l = 0;
            for (uint256 i = 0; i < drawn.length; i++) {
                if (agree[i]) winners[w++] = drawn[i];
                if (slashable[i]) losers[l++] = drawn[i];
            }
        }

        // Effects before any external call.
        j.status = majority ? Status.Verified : Status.Disputed;
        j.resultDigest = digest;
        _release(j.fee);

        // Interactions with the trusted registry only: unlock everyone, slash the losers.
        uint256 slashedTotal = 0;
        for (uint256 i = 0; i < drawn.length; i++) {
            nodes.unlock(drawn[i]);
        }
        for (uint256 i = 0; i < losers.length; i++) {
            (, uint256 paidOn) = _slash(jobId, losers[i]);
            slashedTotal += paidOn;
        }

        uint256 refund = _pay(jobId, j, winners, slashedTotal);
        emit JobFinalized(jobId, j.status, digest, winners, losers, refund);
    }

    // ---- views ----

    /// The commitment a node posts: bound to this chain, this contract, the job and the node, so it can
    /// be replayed neither on another job nor by another node.
    function commitmentOf(uint256 jobId, address node, bytes32 digest, bytes32 salt) public view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, address(this), jobId, node, digest, salt));
    }

    function getJob(uint256 jobId) external view returns (Job memory) {
        if (_jobs[jobId].status == Status.None) revert UnknownJob(jobId);
        return _jobs[jobId];
    }

    function assignedNodes(uint256 jobId) external view returns (address[] memory) {
        return _assigned[jobId];
    }

    function slotOf(uint256 jobId, address node) external view returns (Slot memory) {
        return _slots[jobId][node];
    }

    function outcome(uint256 jobId) external view returns (Settlement settlement, bytes32 digest) {
        Status s = _jobs[jobId].status;
        if (s == Status.None) revert UnknownJob(jobId);
        if (s == Status.Verified) return (Settlement.Verified, _jobs[jobId].resultDigest);
        return (s == Status.Submitted || s == Status.Assigned ? Settlement.Open : Settlement.Failed, bytes32(0));
    }

    // ---- internals ----

    function _expect(uint256 jobId, Status status) private view {
        Status s = _jobs[jobId].status;
        if (s != status) revert WrongStatus(jobId, uint8(s));
    }

    /// Groups the reveals around the digest that matches the most others under the job's policy (see
    /// OutputMatching); it wins if that cluster is a strict majority of all n assigned nodes. With a
    /// majority everyone outside it is slashable; without one nobody can be shown wrong, so only those
    /// who never revealed are. An "input unavailable" reveal is an abstention: never slashable.
    function _tally(uint256 jobId, Job storage j)
        private
        view
        returns (bool majority, bytes32 digest, bool[] memory agree, bool[] memory slashable)
    {
        address[] storage drawn = _assigned[jobId];
        uint256 k = drawn.length;
        bytes32[] memory digests = new bytes32[](k);
        bool[] memory voted = new bool[](k); // revealed an output (not an abstention)
        bool[] memory revealed = new bool[](k);
        for (uint256 i = 0; i < k; i++) {
            Slot storage s = _slots[jobId][drawn[i]];
            revealed[i] = s.revealed;
            voted[i] = s.revealed && s.digest != INPUT_UNAVAILABLE;
            digests[i] = s.digest;
        }
        (uint256 center, uint256 size) = OutputMatching.largestCluster(digests, voted, j.policy, j.threshold);
        agree = new bool[](k);
        slashable = new bool[](k);
        majority = size * 2 > j.n;
        if (majority) digest = digests[center];
        for (uint256 i = 0; i < k; i++) {
            agree[i] = majority && voted[i] && OutputMatching.matches(j.policy, j.threshold, digest, digests[i]);
            slashable[i] = majority ? !agree[i] && !(revealed[i] && !voted[i]) : !revealed[i];
        }
    }

    /// Credits the winners their share of the fee plus an equal part of the slashed stake, and the user
    /// everything else: the unearned fee, plus (when there are no winners) compensation for no-shows of at
    /// most its fee.
    function _pay(uint256 jobId, Job storage j, address[] memory winners, uint256 slashedTotal)
        private
        returns (uint256 refund)
    {
        if (winners.length == 0) {
            _credit(j.user, jobId, j.fee);
            return j.fee + _compensate(jobId, j.user, j.fee, slashedTotal);
        }
        uint256 each = j.fee / j.n + slashedTotal / winners.length;
        for (uint256 i = 0; i < winners.length; i++) {
            _credit(winners[i], jobId, each);
        }
        refund = j.fee + slashedTotal - each * winners.length;
        _credit(j.user, jobId, refund);
    }
}
