// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ModelRegistry} from "./ModelRegistry.sol";
import {NodeRegistry} from "./NodeRegistry.sol";
import {JobEscrow} from "./JobEscrow.sol";
import {IRandomness} from "./IRandomness.sol";
import {Int8Step} from "./Int8Step.sol";

/// @title OptimisticJobs
/// @notice The optimistic scheme (as in Truebit and opML): one executor, drawn by stake, runs the job on
/// the integer runtime and posts its output with the Merkle root of its execution trace. The result stands
/// unless someone proves it wrong within the challenge window: a challenger posts a bond, and an
/// interactive bisection over the trace (the executor reveals the state hash at the midpoint, proved against
/// its trace root; the challenger agrees or disagrees) narrows the disagreement to one step, which this
/// contract recomputes (`Int8Step`) from the agreed state and the step's weights, proved against the
/// model's weights root. A party that lets its turn time out loses.
///
/// Money: the fee is escrowed at submission; an unchallenged result pays it to the executor. A challenger
/// who wins gets its bond back plus the executor's slashed stake, and the user is refunded (no re-run: the
/// user may resubmit). A challenger who loses forfeits its bond to the executor, and the challenge window
/// reopens for others (so a sock-puppet dispute cannot run out the clock); nobody may challenge the same job
/// twice. An executor that never posts is slashed and the user refunded its fee plus compensation (at most
/// the fee). A share of every slash is burned (JobEscrow), so an executor that "challenges" its own wrong
/// result through a second account to recover its slash still loses money. Every payment is a credit
/// withdrawn by its owner, so the balance always equals escrow + bonds + credits.
contract OptimisticJobs is JobEscrow {
    uint256 public constant MAX_INPUT_BYTES = 4096;
    uint256 public constant MAX_OUTPUT_BYTES = 1024;
    uint256 public constant MAX_STEPS = 1 << 24;

    enum Status {
        None,
        Submitted, // fee escrowed, waiting for assignment
        Assigned, // executor drawn and locked; waiting for its result
        Posted, // result posted; challengeable until `deadline` (or disputed now)
        Finalized, // unchallenged or every challenge lost: executor paid
        Overturned, // a challenger proved the result wrong: executor slashed, user refunded
        Refunded // never assigned, or the executor never posted: user refunded
    }

    /// Whose move a dispute waits for.
    enum Turn {
        None,
        Executor, // post the state hash at the midpoint of [lo, hi]
        Challenger, // agree or disagree with it
        Step // prove the one step lo -> hi (anyone; the challenger loses if nobody does)
    }

    struct Job {
        address user;
        address executor;
        bytes32 modelId;
        bytes32 inputHash; // sha256 of the input bytes, which JobSubmitted carries
        Status status;
        uint64 submitBlock;
        uint64 deadline; // Assigned: last block to post; Posted: last block to challenge
        uint32 steps;
        uint256 fee;
        bytes32 resultDigest; // hash of the halted state holding the output
        bytes32 traceRoot;
        bytes32 candidatesHash; // the nodes eligible at submission and their stakes (StakeDraw)
    }

    struct Dispute {
        address challenger;
        Turn turn;
        uint64 deadline; // last block for the current turn
        uint64 lo; // the challenger agrees with state lo (state 0 is checked against the input)
        uint64 hi; // and disagrees with state hi
        uint32 rounds;
        uint256 bond;
        bytes32 hLo;
        bytes32 hHi;
        bytes32 hMid;
    }

    uint64 public immutable executeWindow; // blocks from assignment to post
    uint64 public immutable challengeWindow; // blocks from post (or from a lost dispute) to challenge
    uint64 public immutable roundWindow; // blocks per dispute turn
    uint256 public immutable challengeBond;

    mapping(uint256 => Job) private _jobs;
    mapping(uint256 => Dispute) private _disputes;
    mapping(uint256 => mapping(address => bool)) public hasChallenged;

    event JobSubmitted(
        uint256 indexed jobId, address indexed user, bytes32 indexed modelId, bytes32 inputHash, bytes input, uint256 fee
    );
    event JobAssigned(uint256 indexed jobId, address indexed executor, uint64 postDeadline);
    event ResultPosted(
        uint256 indexed jobId, address indexed executor, bytes output, bytes32 resultDigest, bytes32 traceRoot,
        uint32 steps, uint64 challengeDeadline
    );
    event Challenged(uint256 indexed jobId, address indexed challenger, uint64 lo, uint64 hi, uint64 deadline);
    event MidpointPosted(uint256 indexed jobId, uint32 round, uint64 mid, bytes32 stateHash, uint64 deadline);
    event Responded(uint256 indexed jobId, uint32 round, bool agree, uint64 lo, uint64 hi, uint64 deadline);
    event StepChecked(uint256 indexed jobId, uint64 step, bytes32 computed, bytes32 claimed);
    event DisputeSettled(
        uint256 indexed jobId, address indexed challenger, bool executorWon, uint64 lo, uint64 hi, uint32 rounds,
        string reason
    );
    event JobFinalized(uint256 indexed jobId, address indexed executor, uint256 paid);
    /// `slashed`: the stake taken from the executor; the challenger is credited it less the burned share.
    event JobOverturned(uint256 indexed jobId, address indexed challenger, uint256 slashed, uint256 refund);

    error ZeroBond();
    error InputSize(uint256 length);
    error PolicyMustBeExact(bytes32 modelId);
    error NotExecutor(uint256 jobId);
    error PostWindowClosed(uint256 jobId);
    error PostWindowOpen(uint256 jobId);
    error OutputTooLong(uint256 length);
    error StepsOutOfRange(uint256 steps);
    error ZeroTraceRoot();
    error DisputeOpen(uint256 jobId);
    error ChallengeWindowOpen(uint256 jobId);
    error ChallengeWindowClosed(uint256 jobId);
    error SelfChallenge(uint256 jobId);
    error AlreadyChallenged(uint256 jobId);
    error WrongBond(uint256 sent, uint256 required);
    error NotYourTurn(uint256 jobId);
    error TurnTimedOut(uint256 jobId);
    error TurnStillOpen(uint256 jobId);
    error NoDispute(uint256 jobId);
    error NotAtOneStep(uint256 jobId);
    error BadTraceProof(uint256 jobId);
    error BadWeightsProof(uint256 jobId);
    error NotInitialState(uint256 jobId);
    error StateMismatch(uint256 jobId);

    constructor(
        ModelRegistry models_,
        NodeRegistry nodes_,
        IRandomness randomness_,
        uint64 executeWindow_,
        uint64 challengeWindow_,
        uint64 roundWindow_,
        uint256 challengeBond_,
        uint256 slashBps_,
        uint256 burnBps_
    ) JobEscrow(models_, nodes_, randomness_, slashBps_, burnBps_) {
        if (executeWindow_ == 0 || challengeWindow_ == 0 || roundWindow_ == 0) revert ZeroWindow();
        if (challengeBond_ == 0) revert ZeroBond();
        executeWindow = executeWindow_;
        challengeWindow = challengeWindow_;
        roundWindow = roundWindow_;
        challengeBond = challengeBond_;
    }

    // ---- users ----

    /// Escrows the fee for running `modelId` on `input`. The input goes on-chain (in the event) so every
    /// watcher can re-execute the job: an optimistic result is only as safe as its data is available.
    function submit(bytes32 modelId, bytes calldata input) external payable returns (uint256 jobId) {
        if (input.length == 0 || input.length > MAX_INPUT_BYTES) revert InputSize(input.length);
        if (!models.exists(modelId)) revert UnknownModel(modelId);
        ModelRegistry.Model memory m = models.getModel(modelId);
        if (m.policy != 0) revert PolicyMustBeExact(modelId);
        jobId = _openJob(modelId, m.price);
        Job storage j = _jobs[jobId];
        j.user = msg.sender;
        j.modelId = modelId;
        j.inputHash = sha256(input);
        j.status = Status.Submitted;
        j.submitBlock = uint64(block.number);
        j.fee = msg.value;
        emit JobSubmitted(jobId, msg.sender, modelId, j.inputHash, input, msg.value);
        j.candidatesHash = _freezeCandidates(jobId, modelId, 1);
    }

    /// Draws the executor by stake over the candidates frozen at submission (see StakeDraw), from the block
    /// after submission; anyone may call. A job that can no longer be assigned (no candidate registered
    /// any more, or the randomness expired) is refunded instead.
    function assign(uint256 jobId, address[] calldata cands, uint256[] calldata frozenWeights) external nonReentrant {
        Job storage j = _jobs[jobId];
        _expect(jobId, Status.Submitted);
        address executor = _drawOneOrRefund(jobId, j.submitBlock, j.candidatesHash, cands, frozenWeights, j.user, j.fee);
        if (executor == address(0)) {
            j.status = Status.Refunded;
            return;
        }
        (j.executor, j.status, j.deadline) = (executor, Status.Assigned, uint64(block.number) + executeWindow);
        emit JobAssigned(jobId, executor, j.deadline);
    }

    // ---- the executor ----

    /// Posts the output, the root of the trace's state hashes (states 0..paddedSteps(steps)) and the number
    /// of steps. The result digest is the hash of the halted state holding `output`.
    function post(uint256 jobId, bytes calldata output, bytes32 traceRoot, uint32 steps) external {
        Job storage j = _jobs[jobId];
        _expect(jobId, Status.Assigned);
        if (msg.sender != j.executor) revert NotExecutor(jobId);
        if (block.number > j.deadline) revert PostWindowClosed(jobId);
        if (output.length > MAX_OUTPUT_BYTES) revert OutputTooLong(output.length);
        if (steps == 0 || steps > MAX_STEPS) revert StepsOutOfRange(steps);
        if (traceRoot == bytes32(0)) revert ZeroTraceRoot();
        j.status = Status.Posted;
        j.resultDigest = Int8Step.haltedHash(output);
        j.traceRoot = traceRoot;
        j.steps = steps;
        j.deadline = uint64(block.number) + challengeWindow;
        emit ResultPosted(jobId, msg.sender, output, j.resultDigest, traceRoot, steps, j.deadline);
    }

    /// Slashes an executor that let the post window close; refunds the user its fee plus compensation.
    function missedPost(uint256 jobId) external nonReentrant {
        Job storage j = _jobs[jobId];
        _expect(jobId, Status.Assigned);
        if (block.number <= j.deadline) revert PostWindowOpen(jobId);
        j.status = Status.Refunded;
        nodes.unlock(j.executor);
        (, uint256 paidOn) = _slash(jobId, j.executor);
        _refund(jobId, j.user, j.fee, "executor did not post");
        _compensate(jobId, j.user, j.fee, paidOn);
    }

    /// Pays the executor once the challenge window has closed with no dispute open; anyone may call.
    function finalize(uint256 jobId) external nonReentrant {
        Job storage j = _jobs[jobId];
        _expect(jobId, Status.Posted);
        if (_disputes[jobId].turn != Turn.None) revert DisputeOpen(jobId);
        if (block.number <= j.deadline) revert ChallengeWindowOpen(jobId);
        j.status = Status.Finalized;
        _release(j.fee);
        nodes.unlock(j.executor);
        _credit(j.executor, jobId, j.fee);
        emit JobFinalized(jobId, j.executor, j.fee);
    }

    // ---- disputes ----

    /// Opens a dispute over a posted result with a bond of exactly `challengeBond`. The challenger disagrees
    /// with the final state (the result digest); bisection runs over [0, paddedSteps(steps)].
    function challenge(uint256 jobId) external payable {
        Job storage j = _jobs[jobId];
        _expect(jobId, Status.Posted);
        if (block.number > j.deadline) revert ChallengeWindowClosed(jobId);
        if (_disputes[jobId].turn != Turn.None) revert DisputeOpen(jobId);
        if (msg.sender == j.executor) revert SelfChallenge(jobId);
        if (hasChallenged[jobId][msg.sender]) revert AlreadyChallenged(jobId);
        if (msg.value != challengeBond) revert WrongBond(msg.value, challengeBond);
        hasChallenged[jobId][msg.sender] = true;
        totalBonds += msg.value;
        Dispute storage d = _disputes[jobId];
        d.challenger = msg.sender;
        d.bond = msg.value;
        d.hi = uint64(paddedSteps(j.steps));
        d.hHi = j.resultDigest;
        d.turn = d.hi == 1 ? Turn.Step : Turn.Executor;
        d.deadline = uint64(block.number) + roundWindow;
        emit Challenged(jobId, msg.sender, 0, d.hi, d.deadline);
    }

    /// The executor reveals the hash of state (lo + hi) / 2, proved to be that leaf of its trace root.
    function bisect(uint256 jobId, bytes32 midHash, bytes32[] calldata proof) external {
        Dispute storage d = _disputes[jobId];
        Job storage j = _jobs[jobId];
        if (d.turn != Turn.Executor || msg.sender != j.executor) revert NotYourTurn(jobId);
        if (block.number > d.deadline) revert TurnTimedOut(jobId);
        uint64 mid = (d.lo + d.hi) / 2;
        if (!MerkleProof.verifyCalldata(proof, j.traceRoot, traceLeaf(mid, midHash))) revert BadTraceProof(jobId);
        d.hMid = midHash;
        d.turn = Turn.Challenger;
        d.deadline = uint64(block.number) + roundWindow;
        emit MidpointPosted(jobId, d.rounds + 1, mid, midHash, d.deadline);
    }

    /// The challenger agrees (the disagreement is after the midpoint) or disagrees (at or before it).
    function respond(uint256 jobId, bool agree) external {
        Dispute storage d = _disputes[jobId];
        if (d.turn != Turn.Challenger || msg.sender != d.challenger) revert NotYourTurn(jobId);
        if (block.number > d.deadline) revert TurnTimedOut(jobId);
        uint64 mid = (d.lo + d.hi) / 2;
        if (agree) {
            d.lo = mid;
            d.hLo = d.hMid;
        } else {
            d.hi = mid;
            d.hHi = d.hMid;
        }
        d.rounds += 1;
        d.turn = d.hi - d.lo == 1 ? Turn.Step : Turn.Executor;
        d.deadline = uint64(block.number) + roundWindow;
        emit Responded(jobId, d.rounds, agree, d.lo, d.hi, d.deadline);
    }

    /// Settles a dispute narrowed to one step: `state` is state lo (its hash agreed, or for lo = 0 the
    /// job's input), `row` the step's weights with a proof against the model's weights root. The executor
    /// wins iff the recomputed next state hashes to its claim. Anyone may call it.
    function proveStep(uint256 jobId, bytes calldata state, Int8Step.Row calldata row, bytes32[] calldata weightsProof)
        external
        nonReentrant
    {
        Dispute storage d = _disputes[jobId];
        Job storage j = _jobs[jobId];
        if (d.turn != Turn.Step) revert NotAtOneStep(jobId);
        if (block.number > d.deadline) revert TurnTimedOut(jobId);
        if (d.lo == 0) {
            (bool initial, bytes calldata x) = Int8Step.isInitial(state);
            if (!initial || sha256(x) != j.inputHash) revert NotInitialState(jobId);
        } else if (Int8Step.hashCalldata(state) != d.hLo) {
            revert StateMismatch(jobId);
        }
        (uint16 layer,,,) = Int8Step.parse(state);
        if (layer != Int8Step.HALT) {
            bytes32 root = models.getModel(j.modelId).weightsRoot;
            if (!MerkleProof.verifyCalldata(weightsProof, root, Int8Step.rowLeaf(row))) revert BadWeightsProof(jobId);
        }
        bytes32 computed = Int8Step.nextHash(state, row);
        emit StepChecked(jobId, d.lo, computed, d.hHi);
        _settle(jobId, computed == d.hHi, "one-step check");
    }

    /// Ends a dispute whose current turn timed out: the silent party loses. Anyone may call.
    function timeout(uint256 jobId) external nonReentrant {
        Dispute storage d = _disputes[jobId];
        if (d.turn == Turn.None) revert NoDispute(jobId);
        if (block.number <= d.deadline) revert TurnStillOpen(jobId);
        bool executorSilent = d.turn == Turn.Executor;
        _settle(jobId, !executorSilent, executorSilent ? "executor timed out" : "challenger timed out");
    }

    // ---- views ----

    function getJob(uint256 jobId) external view returns (Job memory) {
        if (_jobs[jobId].status == Status.None) revert UnknownJob(jobId);
        return _jobs[jobId];
    }

    function getDispute(uint256 jobId) external view returns (Dispute memory) {
        return _disputes[jobId];
    }

    /// Both at once, for participants that poll every open job.
    function getJobAndDispute(uint256 jobId) external view returns (Job memory, Dispute memory) {
        if (_jobs[jobId].status == Status.None) revert UnknownJob(jobId);
        return (_jobs[jobId], _disputes[jobId]);
    }

    function outcome(uint256 jobId) external view returns (Settlement settlement, bytes32 digest) {
        Status s = _jobs[jobId].status;
        if (s == Status.None) revert UnknownJob(jobId);
        if (s == Status.Finalized) return (Settlement.Verified, _jobs[jobId].resultDigest);
        return (s == Status.Overturned || s == Status.Refunded ? Settlement.Failed : Settlement.Open, bytes32(0));
    }

    /// The bisected length: the least power of two >= steps, so a dispute takes ceil(log2(steps)) rounds.
    function paddedSteps(uint256 steps) public pure returns (uint256 p) {
        p = 1;
        while (p < steps) p <<= 1;
    }

    /// The trace-root leaf of state `index`: the index is hashed in, as sorted-pair proofs bind no position.
    function traceLeaf(uint256 index, bytes32 stateHash) public pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(index, stateHash))));
    }

    // ---- internals ----

    function _settle(uint256 jobId, bool executorWon, string memory reason) private {
        Job storage j = _jobs[jobId];
        Dispute memory d = _disputes[jobId];
        delete _disputes[jobId];
        totalBonds -= d.bond;
        emit DisputeSettled(jobId, d.challenger, executorWon, d.lo, d.hi, d.rounds, reason);
        if (executorWon) {
            // Others get a fresh window: a lost (possibly staged) dispute must not run out their clock.
            uint64 reopen = uint64(block.number) + challengeWindow;
            if (reopen > j.deadline) j.deadline = reopen;
            _credit(j.executor, jobId, d.bond);
            return;
        }
        j.status = Status.Overturned;
        _release(j.fee);
        nodes.unlock(j.executor);
        (uint256 slashed, uint256 paidOn) = _slash(jobId, j.executor);
        _credit(d.challenger, jobId, d.bond + paidOn);
        _credit(j.user, jobId, j.fee);
        emit JobOverturned(jobId, d.challenger, slashed, j.fee);
    }

    function _expect(uint256 jobId, Status status) private view {
        Status s = _jobs[jobId].status;
        if (s != status) revert WrongStatus(jobId, uint8(s));
    }
}
