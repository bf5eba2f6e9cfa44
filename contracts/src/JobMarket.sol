// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ModelRegistry} from "./ModelRegistry.sol";
import {NodeRegistry} from "./NodeRegistry.sol";
import {IRandomness} from "./IRandomness.sol";
import {OutputMatching} from "./OutputMatching.sol";
import {StakeDraw} from "./StakeDraw.sol";

/// @title JobMarket
/// @notice Escrow and settlement of jobs, with the quorum scheme: n staked nodes, drawn by stake in a
/// block after submission, commit to a digest of their output, reveal it, and a strict majority
/// cluster of matching reveals wins. Dissenters and no-shows are slashed; without a majority the
/// user is refunded. Every payment is a credit withdrawn by its owner (pull payments), so the
/// market's balance always equals escrowed fees plus withdrawable credits.
contract JobMarket is ReentrancyGuard {
    uint8 public constant SCHEME_QUORUM = 0;
    uint8 public constant MAX_QUORUM = 9;
    uint256 public constant MAX_PARAMS_BYTES = 1024;

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
        uint8 scheme;
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

    ModelRegistry public immutable models;
    NodeRegistry public immutable nodes;
    IRandomness public immutable randomness;
    uint64 public immutable commitWindow; // blocks
    uint64 public immutable revealWindow; // blocks
    uint256 public immutable slashBps; // share of stake taken from a dissenter or no-show

    uint256 public nextJobId = 1;
    uint256 public totalEscrow;
    uint256 public totalCredits;
    mapping(uint256 => Job) private _jobs;
    mapping(uint256 => address[]) private _assigned;
    mapping(uint256 => mapping(address => Slot)) private _slots;
    mapping(address => uint256) public credits;

    event JobSubmitted(
        uint256 indexed jobId, address indexed user, bytes32 indexed modelId, bytes32 inputHash,
        uint8 scheme, uint8 n, uint256 fee, bytes params
    );
    event JobAssigned(uint256 indexed jobId, address[] nodes, uint64 commitDeadline, uint64 revealDeadline);
    event Committed(uint256 indexed jobId, address indexed node, bytes32 commitment);
    /// `outputKey` (sha256 of the output document, served at the node's endpoint) tells clients where to
    /// fetch the output; it is not committed to, because clients check what they fetch against `digest`.
    event Revealed(uint256 indexed jobId, address indexed node, bytes32 digest, bytes32 outputKey);
    event JobFinalized(
        uint256 indexed jobId, Status status, bytes32 digest, address[] winners, address[] slashed,
        uint256 refund
    );
    event JobRefunded(uint256 indexed jobId, address indexed user, uint256 amount, string reason);
    event Credited(address indexed account, uint256 indexed jobId, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);

    constructor(
        ModelRegistry models_,
        NodeRegistry nodes_,
        IRandomness randomness_,
        uint64 commitWindow_,
        uint64 revealWindow_,
        uint256 slashBps_
    ) {
        require(commitWindow_ > 0 && revealWindow_ > 0, "JobMarket: zero window");
        require(slashBps_ <= 10_000, "JobMarket: bps above 10000");
        models = models_;
        nodes = nodes_;
        randomness = randomness_;
        commitWindow = commitWindow_;
        revealWindow = revealWindow_;
        slashBps = slashBps_;
    }

    /// Slashed stake arrives from the registry; nobody else may send coin outside a function.
    receive() external payable {
        require(msg.sender == address(nodes), "JobMarket: direct payments refused");
    }

    // ---- users ----

    function submit(bytes32 modelId, bytes32 inputHash, bytes calldata params, uint8 scheme, uint8 n)
        external
        payable
        returns (uint256 jobId)
    {
        require(scheme == SCHEME_QUORUM, "JobMarket: unsupported scheme");
        require(n >= 1 && n <= MAX_QUORUM && n % 2 == 1, "JobMarket: quorum must be odd, 1..9");
        require(inputHash != bytes32(0), "JobMarket: empty input hash");
        require(params.length <= MAX_PARAMS_BYTES, "JobMarket: params too long");
        require(models.exists(modelId), "JobMarket: unknown model");
        ModelRegistry.Model memory m = models.getModel(modelId);
        require(msg.value >= m.price * n, "JobMarket: fee below price");

        jobId = nextJobId++;
        Job storage j = _jobs[jobId];
        j.user = msg.sender;
        j.modelId = modelId;
        j.inputHash = inputHash;
        j.scheme = scheme;
        j.n = n;
        j.status = Status.Submitted;
        j.policy = m.policy;
        j.threshold = m.threshold;
        j.submitBlock = uint64(block.number);
        j.fee = msg.value;
        j.params = params;
        totalEscrow += msg.value;
        emit JobSubmitted(jobId, msg.sender, modelId, inputHash, scheme, n, msg.value, params);
        _freezeCandidates(jobId, modelId, n);
    }

    /// Records which nodes may be drawn for the job, and with what weight, as of its submission.
    function _freezeCandidates(uint256 jobId, bytes32 modelId, uint8 n) private {
        (address[] memory cands, uint256[] memory weights) = nodes.candidates(modelId);
        require(cands.length >= n, "JobMarket: too few nodes");
        _jobs[jobId].candidatesHash = StakeDraw.digest(cands, weights);
        emit StakeDraw.CandidatesFrozen(jobId, cands, weights);
    }

    /// Draws the job's nodes; anyone may call it from the block after submission, passing the candidate
    /// list frozen at submission (from the CandidatesFrozen event). The draw uses that list, not the
    /// registry as it is now: the seed is public once the submission block is mined, and a draw over live
    /// stakes could be steered by topping up, registering or unbonding after seeing it. A candidate that
    /// has since left the registry gets weight 0; with an unbonding delay above the 256-block assignment
    /// horizon that cannot happen to a node that was eligible at submission. A job that can no longer be
    /// assigned (randomness expired, fewer than n candidates still registered) is refunded instead.
    function assign(uint256 jobId, address[] calldata cands, uint256[] calldata frozenWeights) external nonReentrant {
        Job storage j = _jobs[jobId];
        require(j.status == Status.Submitted, "JobMarket: job not awaiting assignment");
        require(StakeDraw.digest(cands, frozenWeights) == j.candidatesHash, "JobMarket: candidates differ from submission");
        if (randomness.expired(j.submitBlock)) {
            _refund(jobId, "assignment expired");
            return;
        }
        require(randomness.ready(j.submitBlock), "JobMarket: assignment needs a later block");
        (uint256[] memory weights, uint256 live) = StakeDraw.liveWeights(nodes, cands, frozenWeights);
        if (live < j.n) {
            _refund(jobId, "too few nodes");
            return;
        }
        address[] memory drawn = StakeDraw.draw(cands, weights, j.n, randomness.seed(jobId, j.submitBlock));
        j.status = Status.Assigned;
        j.commitDeadline = uint64(block.number) + commitWindow;
        j.revealDeadline = j.commitDeadline + revealWindow;
        for (uint256 i = 0; i < drawn.length; i++) {
            _assigned[jobId].push(drawn[i]);
            _slots[jobId][drawn[i]].assigned = true;
            nodes.lock(drawn[i]);
        }
        emit JobAssigned(jobId, drawn, j.commitDeadline, j.revealDeadline);
    }

    // ---- nodes ----

    function commit(uint256 jobId, bytes32 commitment) external {
        Job storage j = _jobs[jobId];
        Slot storage s = _slots[jobId][msg.sender];
        require(j.status == Status.Assigned, "JobMarket: job not open");
        require(s.assigned, "JobMarket: not assigned to this job");
        require(block.number <= j.commitDeadline, "JobMarket: commit window closed");
        require(s.commitment == bytes32(0), "JobMarket: already committed");
        require(commitment != bytes32(0), "JobMarket: zero commitment");
        s.commitment = commitment;
        j.commits += 1;
        emit Committed(jobId, msg.sender, commitment);
    }

    /// Opens a commitment. Reveals are only taken once every commit is in (or the commit window has
    /// closed), so no assigned node can copy a revealed digest into its own commit.
    function reveal(uint256 jobId, bytes32 digest, bytes32 salt, bytes32 outputKey) external {
        Job storage j = _jobs[jobId];
        Slot storage s = _slots[jobId][msg.sender];
        require(j.status == Status.Assigned, "JobMarket: job not open");
        require(s.assigned, "JobMarket: not assigned to this job");
        require(s.commitment != bytes32(0), "JobMarket: no commit to reveal");
        require(!s.revealed, "JobMarket: already revealed");
        require(j.commits == j.n || block.number > j.commitDeadline, "JobMarket: commit phase still open");
        require(block.number <= j.revealDeadline, "JobMarket: reveal window closed");
        require(commitmentOf(jobId, msg.sender, digest, salt) == s.commitment, "JobMarket: reveal does not match commit");
        s.revealed = true;
        s.digest = digest;
        j.reveals += 1;
        emit Revealed(jobId, msg.sender, digest, outputKey);
    }

    /// Settles an assigned job once every reveal is in or the reveal window has closed; anyone may call.
    function finalize(uint256 jobId) external nonReentrant {
        Job storage j = _jobs[jobId];
        require(j.status == Status.Assigned, "JobMarket: job not open");
        require(j.reveals == j.n || block.number > j.revealDeadline, "JobMarket: reveal window still open");

        address[] storage drawn = _assigned[jobId];
        (bool majority, bytes32 digest, bool[] memory agree, bool[] memory revealed) = _tally(jobId, j);
        // With a majority, everyone outside it is slashed; without one nobody can be shown wrong, so
        // only those who never revealed are.
        uint256 winnerCount = 0;
        uint256 loserCount = 0;
        for (uint256 i = 0; i < drawn.length; i++) {
            if (agree[i]) winnerCount++;
            if (majority ? !agree[i] : !revealed[i]) loserCount++;
        }
        address[] memory winners = new address[](winnerCount);
        address[] memory losers = new address[](loserCount);
        {
            uint256 w = 0;
            uint256 l = 0;
            for (uint256 i = 0; i < drawn.length; i++) {
                if (agree[i]) winners[w++] = drawn[i];
                if (majority ? !agree[i] : !revealed[i]) losers[l++] = drawn[i];
            }
        }

        // Effects before any external call.
        j.status = majority ? Status.Verified : Status.Disputed;
        j.resultDigest = digest;
        totalEscrow -= j.fee;

        // Interactions with the trusted registry only: unlock everyone, slash the losers.
        uint256 slashedTotal = 0;
        for (uint256 i = 0; i < drawn.length; i++) {
            nodes.unlock(drawn[i]);
        }
        for (uint256 i = 0; i < losers.length; i++) {
            slashedTotal += nodes.slash(losers[i], slashBps);
        }

        uint256 refund = _pay(jobId, j, winners, slashedTotal);
        emit JobFinalized(jobId, j.status, digest, winners, losers, refund);
    }

    // ---- anyone ----

    function withdraw() external nonReentrant {
        uint256 amount = credits[msg.sender];
        require(amount > 0, "JobMarket: nothing to withdraw");
        credits[msg.sender] = 0;
        totalCredits -= amount;
        emit Withdrawn(msg.sender, amount);
        Address.sendValue(payable(msg.sender), amount);
    }

    // ---- views ----

    /// The commitment a node posts: bound to this chain, this market, the job and the node, so it can
    /// be replayed neither on another job nor by another node.
    function commitmentOf(uint256 jobId, address node, bytes32 digest, bytes32 salt) public view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, address(this), jobId, node, digest, salt));
    }

    function getJob(uint256 jobId) external view returns (Job memory) {
        require(_jobs[jobId].status != Status.None, "JobMarket: unknown job");
        return _jobs[jobId];
    }

    function assignedNodes(uint256 jobId) external view returns (address[] memory) {
        return _assigned[jobId];
    }

    function slotOf(uint256 jobId, address node) external view returns (Slot memory) {
        return _slots[jobId][node];
    }

    // ---- internals ----

    /// Groups the reveals around the digest that matches the most others under the job's policy
    /// (see OutputMatching); it wins if that cluster is a strict majority of all n assigned nodes.
    function _tally(uint256 jobId, Job storage j)
        private
        view
        returns (bool majority, bytes32 digest, bool[] memory agree, bool[] memory revealed)
    {
        address[] storage drawn = _assigned[jobId];
        uint256 k = drawn.length;
        bytes32[] memory digests = new bytes32[](k);
        revealed = new bool[](k);
        for (uint256 i = 0; i < k; i++) {
            Slot storage s = _slots[jobId][drawn[i]];
            revealed[i] = s.revealed;
            digests[i] = s.digest;
        }
        (uint256 center, uint256 size) = OutputMatching.largestCluster(digests, revealed, j.policy, j.threshold);
        agree = new bool[](k);
        if (size * 2 > j.n) {
            majority = true;
            digest = digests[center];
            for (uint256 i = 0; i < k; i++) {
                agree[i] = revealed[i] && OutputMatching.matches(j.policy, j.threshold, digest, digests[i]);
            }
        }
    }

    /// Credits the winners their share of the fee plus an equal part of the slashed stake, and the user
    /// everything else (the whole fee and all slashed stake when there are no winners).
    function _pay(uint256 jobId, Job storage j, address[] memory winners, uint256 slashedTotal)
        private
        returns (uint256 refund)
    {
        refund = j.fee + slashedTotal;
        if (winners.length > 0) {
            uint256 each = j.fee / j.n + slashedTotal / winners.length;
            for (uint256 i = 0; i < winners.length; i++) {
                _credit(winners[i], jobId, each);
            }
            refund -= each * winners.length;
        }
        if (refund > 0) _credit(j.user, jobId, refund);
    }

    function _refund(uint256 jobId, string memory reason) private {
        Job storage j = _jobs[jobId];
        j.status = Status.Refunded;
        totalEscrow -= j.fee;
        _credit(j.user, jobId, j.fee);
        emit JobRefunded(jobId, j.user, j.fee, reason);
    }

    function _credit(address account, uint256 jobId, uint256 amount) private {
        credits[account] += amount;
        totalCredits += amount;
        emit Credited(account, jobId, amount);
    }
}
