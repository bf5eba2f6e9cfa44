// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ModelRegistry} from "./ModelRegistry.sol";
import {NodeRegistry} from "./NodeRegistry.sol";
import {IRandomness} from "./IRandomness.sol";
import {IJobOutcome} from "./IJobOutcome.sol";
import {StakeDraw} from "./StakeDraw.sol";

/// @title JobEscrow
/// @notice What every verification scheme shares: the fee escrow, pull-payment credits, refunds, the
/// stake-weighted draw over the candidates frozen at submission, slashing into credits (with a burned
/// share), the shared events and errors, and the seam for sub-jobs on another scheme. A scheme contract
/// inherits it and keeps only its own job struct, phases and rules.
///
/// Books: the contract's balance always equals `totalEscrow + totalBonds + totalCredits`. Fees enter the
/// escrow at submission and leave it exactly once, into credits; slashed stake arrives from the registry
/// and leaves at once, part burned and the rest credited. Every credit is withdrawn by its owner.
///
/// Who may profit from a slash (the rule, written once): only a party that did the work that exposed it
/// (winners of a quorum, a challenger who won a dispute, a verifier who caught a fault) is credited
/// slashed stake, and never all of it: `burnBps` of every slash is burned, so a node that arranges its own
/// exposure through a second account (a self-challenge, a puppet quorum member) always loses money. A
/// user is compensated for no-shows at most up to the fee it paid; the rest is burned too.
abstract contract JobEscrow is ReentrancyGuard, IJobOutcome {
    /// Burned coin goes here: an address nobody holds a key for.
    address public constant BURN_ADDRESS = 0x000000000000000000000000000000000000dEaD;

    ModelRegistry public immutable models;
    NodeRegistry public immutable nodes;
    IRandomness public immutable randomness;
    uint256 public immutable slashBps; // share of a node's stake taken when it is caught
    uint256 public immutable burnBps; // share of every slash that nobody receives

    uint256 public nextJobId = 1;
    uint256 public totalEscrow;
    uint256 public totalBonds;
    uint256 public totalCredits;
    uint256 public totalBurned;
    mapping(address => uint256) public credits;
    /// The scheme contract we are pulling credits from right now (see `_collectFrom`), else zero.
    address private _pulling;

    event JobRefunded(uint256 indexed jobId, address indexed user, uint256 amount, string reason);
    event Credited(address indexed account, uint256 indexed jobId, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);
    event Burned(uint256 indexed jobId, uint256 amount);

    error ZeroWindow();
    error BpsAbove10000();
    error DirectPaymentRefused(address from);
    error NothingToWithdraw();
    error UnknownJob(uint256 jobId);
    error UnknownModel(bytes32 modelId);
    error WrongStatus(uint256 jobId, uint8 status);
    error FeeBelowPrice(uint256 fee, uint256 required);
    error TooFewNodes(uint256 candidates, uint256 required);
    error CandidatesDiffer(uint256 jobId);
    error AssignmentTooEarly(uint256 jobId);
    error NotAssigned(uint256 jobId, address account);

    constructor(ModelRegistry models_, NodeRegistry nodes_, IRandomness randomness_, uint256 slashBps_, uint256 burnBps_) {
        if (slashBps_ > 10_000 || burnBps_ > 10_000) revert BpsAbove10000();
        models = models_;
        nodes = nodes_;
        randomness = randomness_;
        slashBps = slashBps_;
        burnBps = burnBps_;
    }

    /// Slashed stake arrives from the registry, and credits from a scheme we are pulling them from;
    /// nobody else may send coin outside a function.
    receive() external payable {
        if (msg.sender != address(nodes) && msg.sender != _pulling) revert DirectPaymentRefused(msg.sender);
    }

    // ---- anyone ----

    function withdraw() external nonReentrant {
        uint256 amount = credits[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        credits[msg.sender] = 0;
        totalCredits -= amount;
        emit Withdrawn(msg.sender, amount);
        Address.sendValue(payable(msg.sender), amount);
    }

    // ---- submission and the draw ----

    /// Takes a new job id for a fee of at least `required` (the caller's price rule) and escrows it.
    function _openJob(bytes32 modelId, uint256 required) internal returns (uint256 jobId) {
        if (!models.exists(modelId)) revert UnknownModel(modelId);
        if (msg.value < required) revert FeeBelowPrice(msg.value, required);
        jobId = nextJobId++;
        totalEscrow += msg.value;
    }

    /// The model's on-chain price per node (reverts UnknownModel first).
    function _price(bytes32 modelId) internal view returns (uint256) {
        if (!models.exists(modelId)) revert UnknownModel(modelId);
        return models.getModel(modelId).price;
    }

    /// Records which nodes may be drawn for the job, and with what weight, as of its submission; returns
    /// the commitment the job stores. At least `need` candidates must serve the model now.
    function _freezeCandidates(uint256 jobId, bytes32 modelId, uint256 need) internal returns (bytes32) {
        (address[] memory cands, uint256[] memory weights) = nodes.candidates(modelId);
        if (cands.length < need) revert TooFewNodes(cands.length, need);
        emit StakeDraw.CandidatesFrozen(jobId, cands, weights);
        return StakeDraw.digest(cands, weights);
    }

    /// Draws `n` distinct nodes over the candidate list frozen at submission and locks them. The seed is
    /// public once the submission block is mined, so the draw must not read live stakes (they could be
    /// topped up after seeing it). Returns an empty list and the reason when the job can no longer be
    /// assigned (randomness expired, fewer than `n` candidates still registered): refund it then.
    function _drawFrozen(
        uint256 jobId,
        uint64 submitBlock,
        bytes32 candidatesHash,
        address[] calldata cands,
        uint256[] calldata frozenWeights,
        uint256 n
    ) internal returns (address[] memory drawn, string memory refundReason) {
        if (StakeDraw.digest(cands, frozenWeights) != candidatesHash) revert CandidatesDiffer(jobId);
        if (randomness.expired(submitBlock)) return (drawn, "assignment expired");
        if (!randomness.ready(submitBlock)) revert AssignmentTooEarly(jobId);
        return _drawAndLock(jobId, submitBlock, cands, frozenWeights, n);
    }

    /// The single-node draw of the one-executor schemes: the drawn node (locked), or address(0) after
    /// refunding `user` when the job can no longer be assigned.
    function _drawOneOrRefund(
        uint256 jobId,
        uint64 submitBlock,
        bytes32 candidatesHash,
        address[] calldata cands,
        uint256[] calldata frozenWeights,
        address user,
        uint256 fee
    ) internal returns (address node) {
        (address[] memory drawn, string memory refundReason) =
            _drawFrozen(jobId, submitBlock, candidatesHash, cands, frozenWeights, 1);
        if (drawn.length == 0) {
            _refund(jobId, user, fee, refundReason);
            return address(0);
        }
        return drawn[0];
    }

    function _drawAndLock(
        uint256 jobId,
        uint64 submitBlock,
        address[] calldata cands,
        uint256[] calldata frozenWeights,
        uint256 n
    ) private returns (address[] memory drawn, string memory refundReason) {
        (uint256[] memory weights, uint256 live) = StakeDraw.liveWeights(nodes, cands, frozenWeights);
        if (live < n) return (drawn, "too few nodes");
        bytes32 seed = randomness.seed(jobId, submitBlock);
        drawn = StakeDraw.draw(cands, weights, n, seed);
        for (uint256 i = 0; i < drawn.length; i++) {
            nodes.lock(drawn[i]);
        }
    }

    // ---- money ----

    /// Moves `fee` out of the escrow (it is about to be credited to someone).
    function _release(uint256 fee) internal {
        totalEscrow -= fee;
    }

    /// Releases the job's whole fee back to its user.
    function _refund(uint256 jobId, address user, uint256 fee, string memory reason) internal {
        totalEscrow -= fee;
        _credit(user, jobId, fee);
        emit JobRefunded(jobId, user, fee, reason);
    }

    function _credit(address account, uint256 jobId, uint256 amount) internal {
        if (amount == 0) return;
        credits[account] += amount;
        totalCredits += amount;
        emit Credited(account, jobId, amount);
    }

    /// Takes `slashBps` of `node`'s stake; returns the stake taken and what may be paid on (the slash less
    /// its burned share). Only the trusted registry is called.
    function _slash(uint256 jobId, address node) internal returns (uint256 taken, uint256 distributable) {
        taken = nodes.slash(node, slashBps);
        uint256 burned = (taken * burnBps) / 10_000;
        _burn(jobId, burned);
        distributable = taken - burned;
    }

    /// Compensation for a user whose nodes failed it: the slashed amount, at most the fee it paid; the
    /// excess is burned, so nobody can farm stake by making nodes miss windows on a cheap job.
    function _compensate(uint256 jobId, address user, uint256 fee, uint256 slashed) internal returns (uint256 paid) {
        paid = slashed > fee ? fee : slashed;
        _burn(jobId, slashed - paid);
        _credit(user, jobId, paid);
    }

    function _burn(uint256 jobId, uint256 amount) internal {
        if (amount == 0) return;
        totalBurned += amount;
        emit Burned(jobId, amount);
        // BURN_ADDRESS has no code: the call cannot reenter or fail.
        Address.sendValue(payable(BURN_ADDRESS), amount);
    }

    // ---- sub-jobs on another scheme ----

    /// Opens a job on another scheme contract, paid from this contract's escrow: the child sees this
    /// contract as an ordinary user (it pays the fee and is credited any refund). Read the child's result
    /// with `IJobOutcome(child).outcome(childId)` and pull refunds with `_collectFrom(child)`.
    function _openSubJob(address child, uint256 fee, bytes memory submitCall) internal returns (uint256 childId) {
        totalEscrow -= fee;
        bytes memory ret = Address.functionCallWithValue(child, submitCall, fee);
        childId = abi.decode(ret, (uint256));
    }

    /// Withdraws what `child` owes this contract into our escrow pot (returns the amount, 0 if nothing).
    function _collectFrom(address child) internal returns (uint256 amount) {
        uint256 owed = JobEscrow(payable(child)).credits(address(this));
        if (owed == 0) return 0;
        uint256 before = address(this).balance;
        _pulling = child;
        JobEscrow(payable(child)).withdraw();
        _pulling = address(0);
        amount = address(this).balance - before;
        totalEscrow += amount;
    }
}
