// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ModelRegistry} from "../src/ModelRegistry.sol";
import {NodeRegistry} from "../src/NodeRegistry.sol";
import {IRandomness} from "../src/IRandomness.sol";
import {IJobOutcome} from "../src/IJobOutcome.sol";
import {JobEscrow} from "../src/JobEscrow.sol";
import {QuorumJobs} from "../src/QuorumJobs.sol";

/// @notice Test-only: the smallest scheme on JobEscrow, the worked example of docs/architecture.md. One
/// drawn node echoes a digest and is paid; or anyone may escalate the job to a quorum sub-job on
/// QuorumJobs (paid from this job's fee), and the job settles with the quorum's verdict.
contract EchoJobs is JobEscrow {
    enum Status {
        None,
        Submitted,
        Assigned,
        Escalated,
        Verified,
        Refunded
    }

    struct Job {
        address user;
        address node;
        bytes32 modelId;
        bytes32 inputHash;
        Status status;
        uint64 submitBlock;
        uint256 fee;
        bytes32 candidatesHash;
        bytes32 digest;
        uint256 subJob;
    }

    QuorumJobs public immutable quorum;
    mapping(uint256 => Job) private _jobs;

    event JobSubmitted(uint256 indexed jobId, address indexed user, bytes32 indexed modelId, bytes32 inputHash, uint256 fee);
    event Echoed(uint256 indexed jobId, address indexed node, bytes32 digest);
    event Escalated(uint256 indexed jobId, uint256 subJob);

    error NotTheNode(uint256 jobId);

    constructor(ModelRegistry models_, NodeRegistry nodes_, IRandomness randomness_, QuorumJobs quorum_, uint256 slashBps_, uint256 burnBps_)
        JobEscrow(models_, nodes_, randomness_, slashBps_, burnBps_)
    {
        quorum = quorum_;
    }

    function submit(bytes32 modelId, bytes32 inputHash) external payable returns (uint256 jobId) {
        jobId = _openJob(modelId, _price(modelId));
        Job storage j = _jobs[jobId];
        j.user = msg.sender;
        j.modelId = modelId;
        j.inputHash = inputHash;
        j.status = Status.Submitted;
        j.submitBlock = uint64(block.number);
        j.fee = msg.value;
        emit JobSubmitted(jobId, msg.sender, modelId, inputHash, msg.value);
        j.candidatesHash = _freezeCandidates(jobId, modelId, 1);
    }

    function assign(uint256 jobId, address[] calldata cands, uint256[] calldata weights) external nonReentrant {
        Job storage j = _jobs[jobId];
        if (j.status != Status.Submitted) revert WrongStatus(jobId, uint8(j.status));
        address node = _drawOneOrRefund(jobId, j.submitBlock, j.candidatesHash, cands, weights, j.user, j.fee);
        if (node == address(0)) {
            j.status = Status.Refunded;
            return;
        }
        (j.node, j.status) = (node, Status.Assigned);
    }

    function echo(uint256 jobId, bytes32 digest) external nonReentrant {
        Job storage j = _jobs[jobId];
        if (j.status != Status.Assigned) revert WrongStatus(jobId, uint8(j.status));
        if (msg.sender != j.node) revert NotTheNode(jobId);
        (j.status, j.digest) = (Status.Verified, digest);
        _release(j.fee);
        nodes.unlock(j.node);
        _credit(j.node, jobId, j.fee);
        emit Echoed(jobId, msg.sender, digest);
    }

    /// Hands the job to a quorum of `n` on QuorumJobs, paying the sub-job from this job's escrowed fee.
    function escalate(uint256 jobId, uint8 n) external nonReentrant {
        Job storage j = _jobs[jobId];
        if (j.status != Status.Assigned) revert WrongStatus(jobId, uint8(j.status));
        j.status = Status.Escalated;
        nodes.unlock(j.node);
        j.subJob = _openSubJob(address(quorum), j.fee, abi.encodeCall(QuorumJobs.submit, (j.modelId, j.inputHash, "", n)));
        emit Escalated(jobId, j.subJob);
    }

    /// Settles an escalated job from its sub-job's outcome; the sub-job's refund, if any, goes to the user.
    function settle(uint256 jobId) external nonReentrant {
        Job storage j = _jobs[jobId];
        if (j.status != Status.Escalated) revert WrongStatus(jobId, uint8(j.status));
        (Settlement s, bytes32 digest) = quorum.outcome(j.subJob);
        if (s == Settlement.Open) revert WrongStatus(jobId, uint8(j.status));
        j.status = s == Settlement.Verified ? Status.Verified : Status.Refunded;
        j.digest = digest;
        uint256 back = _collectFrom(address(quorum));
        if (back > 0) {
            _release(back);
            _credit(j.user, jobId, back);
        }
    }

    function getJob(uint256 jobId) external view returns (Job memory) {
        if (_jobs[jobId].status == Status.None) revert UnknownJob(jobId);
        return _jobs[jobId];
    }

    function outcome(uint256 jobId) external view returns (Settlement settlement, bytes32 digest) {
        Status s = _jobs[jobId].status;
        if (s == Status.None) revert UnknownJob(jobId);
        if (s == Status.Verified) return (Settlement.Verified, _jobs[jobId].digest);
        return (s == Status.Refunded ? Settlement.Failed : Settlement.Open, bytes32(0));
    }
}
