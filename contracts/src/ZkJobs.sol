// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ModelRegistry} from "./ModelRegistry.sol";
import {JobEscrow} from "./JobEscrow.sol";
import {NodeRegistry} from "./NodeRegistry.sol";
import {IRandomness} from "./IRandomness.sol";

/// @notice The verifier EZKL generates for one circuit (Halo2 + KZG on BN254). It returns true for a
/// valid proof and reverts (rather than returning false) for an invalid one.
interface IZkVerifier {
    function verifyProof(bytes calldata proof, uint256[] calldata instances) external returns (bool);
}

/// @title ZkJobs
/// @notice The zk scheme: one staked node, drawn by stake in a block after submission, runs the model and
/// proves the run with EZKL; the model's verifier contract checks the proof on-chain. A valid proof pays
/// the node the whole fee; an invalid proof, a proof about another input, or no proof by the deadline
/// slashes the node and refunds the user (its fee plus compensation of at most the fee; JobEscrow burns a
/// share of every slash). Pull payments throughout: the
/// contract's balance always equals escrowed fees plus withdrawable credits.
///
/// Binding a proof to its job: the circuit's inputs are public instances. The user posts the quantized
/// input (BN254 field elements) with the job; the contract stores inputHash = keccak256 of those words
/// (abi.encodePacked, 32 bytes big-endian each) and, when a proof arrives, hashes the proof's input
/// instances and compares. Carrying the input on-chain also makes it available to the node by
/// construction, and the per-model bound on input values keeps every accepted job provable, so a user
/// cannot get a node slashed with an input it cannot prove.
contract ZkJobs is JobEscrow {
    /// The BN254 scalar field: every public instance is an element of it.
    uint256 public constant FIELD_MODULUS =
        21888242871839275222246405745257275088548364400416034343698204186575808495617;
    uint256 public constant MAX_INPUTS = 4096;
    uint256 public constant MAX_OUTPUTS = 1024;
    uint256 public constant MAX_VERIFY_GAS = 20_000_000;
    /// Gas kept back for settling after the verifier ran (unlock, slash, credits, events).
    uint256 public constant SETTLE_GAS_RESERVE = 300_000;

    enum Status {
        None,
        Submitted, // fee escrowed, waiting for assignment
        Assigned, // one node drawn: prove before the deadline
        Verified, // valid proof; node paid
        Rejected, // invalid proof or wrong input instances; node slashed, user refunded
        Expired, // no proof by the deadline; node slashed, user refunded
        Refunded // never assigned (no eligible node, randomness expired); user refunded
    }

    /// What the chain knows about a model's circuit; set once by the model's owner.
    struct Circuit {
        address verifier;
        bytes32 verifierCodeHash; // extcodehash at registration: lets anyone compare with a local build
        bytes32 vkHash; // sha256 of the EZKL verification key the verifier was generated from
        uint32 nInputs; // public input instances, first in the instance vector
        uint32 nOutputs; // public output instances, after the inputs
        uint64 verifyGas; // gas given to the verifier: a valid proof never fails for want of gas
        uint256 inputMax; // every input instance must be <= inputMax (the range the circuit proves)
    }

    struct Job {
        address user;
        bytes32 modelId;
        bytes32 inputHash; // keccak256(abi.encodePacked(input instances))
        Status status;
        address node;
        uint64 submitBlock;
        uint64 deadline; // last block in which a proof is accepted
        uint256 fee;
        bytes32 outputHash; // keccak256(abi.encodePacked(output instances)) of the verified proof
        bytes32 candidatesHash; // the nodes eligible at submission and their stakes (StakeDraw)
    }

    uint64 public immutable proveWindow; // blocks after assignment

    mapping(bytes32 => Circuit) private _circuits;
    mapping(uint256 => Job) private _jobs;

    event CircuitRegistered(
        bytes32 indexed modelId, address verifier, bytes32 vkHash, uint32 nInputs, uint32 nOutputs,
        uint64 verifyGas, uint256 inputMax
    );
    event JobSubmitted(
        uint256 indexed jobId, address indexed user, bytes32 indexed modelId, bytes32 inputHash, uint256 fee,
        uint256[] input
    );
    event JobAssigned(uint256 indexed jobId, address indexed node, uint64 deadline);
    event ProofAccepted(uint256 indexed jobId, address indexed node, bytes32 outputHash, uint256[] output);
    /// `slashed`: the stake taken from the node (part burned); `refund`: what the user is credited.
    event ProofRejected(uint256 indexed jobId, address indexed node, string reason, uint256 slashed, uint256 refund);
    event JobExpired(uint256 indexed jobId, address indexed node, uint256 slashed, uint256 refund);

    error NotModelOwner(bytes32 modelId);
    error CircuitAlreadyRegistered(bytes32 modelId);
    error VerifierHasNoCode(address verifier);
    error InputCount(uint256 count);
    error OutputCount(uint256 count);
    error VerifyGasOutOfRange(uint256 gas);
    error InputBoundOutsideField();
    error NoCircuit(bytes32 modelId);
    error WrongInputLength(uint256 length, uint256 expected);
    error InputOutOfRange(uint256 index);
    error NotAssignedNode(uint256 jobId);
    error ProofDeadlinePassed(uint256 jobId);
    error ProveWindowOpen(uint256 jobId);
    error NotEnoughGasToVerify(uint256 gasLeft, uint256 required);
    error SliceOutOfRange();

    constructor(
        ModelRegistry models_,
        NodeRegistry nodes_,
        IRandomness randomness_,
        uint64 proveWindow_,
        uint256 slashBps_,
        uint256 burnBps_
    ) JobEscrow(models_, nodes_, randomness_, slashBps_, burnBps_) {
        if (proveWindow_ == 0) revert ZeroWindow();
        proveWindow = proveWindow_;
    }

    // ---- model owners ----

    /// Binds `modelId` to its verifier, once. Only the model's owner in the ModelRegistry may do it, and
    /// it cannot be changed later, so no job can be re-pointed at a verifier that accepts anything.
    function registerCircuit(
        bytes32 modelId,
        address verifier,
        bytes32 vkHash,
        uint32 nInputs,
        uint32 nOutputs,
        uint64 verifyGas,
        uint256 inputMax
    ) external {
        if (!models.exists(modelId)) revert UnknownModel(modelId);
        if (models.getModel(modelId).owner != msg.sender) revert NotModelOwner(modelId);
        if (_circuits[modelId].verifier != address(0)) revert CircuitAlreadyRegistered(modelId);
        if (verifier.code.length == 0) revert VerifierHasNoCode(verifier);
        if (nInputs == 0 || nInputs > MAX_INPUTS) revert InputCount(nInputs);
        if (nOutputs == 0 || nOutputs > MAX_OUTPUTS) revert OutputCount(nOutputs);
        if (verifyGas == 0 || verifyGas > MAX_VERIFY_GAS) revert VerifyGasOutOfRange(verifyGas);
        if (inputMax >= FIELD_MODULUS) revert InputBoundOutsideField();
        _circuits[modelId] = Circuit(verifier, verifier.codehash, vkHash, nInputs, nOutputs, verifyGas, inputMax);
        emit CircuitRegistered(modelId, verifier, vkHash, nInputs, nOutputs, verifyGas, inputMax);
    }

    // ---- users ----

    /// Escrows the fee for proving `modelId` on `input` (the circuit's quantized input instances).
    function submit(bytes32 modelId, uint256[] calldata input) external payable returns (uint256 jobId) {
        Circuit storage c = _circuits[modelId];
        if (c.verifier == address(0)) revert NoCircuit(modelId);
        if (input.length != c.nInputs) revert WrongInputLength(input.length, c.nInputs);
        uint256 bound = c.inputMax;
        for (uint256 i = 0; i < input.length; i++) {
            if (input[i] > bound) revert InputOutOfRange(i);
        }
        jobId = _openJob(modelId, models.getModel(modelId).price);
        Job storage j = _jobs[jobId];
        j.user = msg.sender;
        j.modelId = modelId;
        j.inputHash = _hashWords(input, 0, input.length);
        j.status = Status.Submitted;
        j.submitBlock = uint64(block.number);
        j.fee = msg.value;
        emit JobSubmitted(jobId, msg.sender, modelId, j.inputHash, msg.value, input);
        j.candidatesHash = _freezeCandidates(jobId, modelId, 1);
    }

    /// Draws the job's node by stake over the candidates frozen at submission (see StakeDraw); anyone may
    /// call it from the block after submission. A job that can no longer be assigned (no candidate still
    /// registered, or randomness expired) is refunded instead.
    function assign(uint256 jobId, address[] calldata cands, uint256[] calldata frozenWeights) external nonReentrant {
        Job storage j = _jobs[jobId];
        _expect(jobId, Status.Submitted);
        address node = _drawOneOrRefund(jobId, j.submitBlock, j.candidatesHash, cands, frozenWeights, j.user, j.fee);
        if (node == address(0)) {
            j.status = Status.Refunded;
            return;
        }
        (j.node, j.status, j.deadline) = (node, Status.Assigned, uint64(block.number) + proveWindow);
        emit JobAssigned(jobId, node, j.deadline);
    }

    // ---- the assigned node ----

    /// Settles the job with the node's proof. `instances` are the proof's public instances: the job's
    /// input, then the model's output. Whatever the assigned node submits decides the job: a proof that
    /// does not verify, or verifies for another input, slashes it.
    function submitProof(uint256 jobId, bytes calldata proof, uint256[] calldata instances) external nonReentrant {
        Job storage j = _jobs[jobId];
        _expect(jobId, Status.Assigned);
        if (msg.sender != j.node) revert NotAssignedNode(jobId);
        if (block.number > j.deadline) revert ProofDeadlinePassed(jobId);
        Circuit storage c = _circuits[j.modelId];
        uint256 verifyGas = c.verifyGas;
        // Revert rather than judge when the sender did not bring enough gas (EIP-150 keeps 1/64 back).
        uint256 needed = verifyGas + verifyGas / 63 + SETTLE_GAS_RESERVE;
        if (gasleft() < needed) revert NotEnoughGasToVerify(gasleft(), needed);

        uint256 nIn = c.nInputs;
        string memory reason = "";
        if (instances.length != nIn + c.nOutputs) {
            reason = "wrong number of instances";
        } else if (_hashWords(instances, 0, nIn) != j.inputHash) {
            reason = "proof is about another input";
        } else if (!_verify(c.verifier, verifyGas, proof, instances)) {
            reason = "invalid proof";
        }

        // Effects, then calls to the registry only (the verifier ran under staticcall: it cannot reenter).
        address node = j.node;
        _release(j.fee);
        if (bytes(reason).length == 0) {
            bytes32 outputHash = _hashWords(instances, nIn, instances.length - nIn);
            j.status = Status.Verified;
            j.outputHash = outputHash;
            nodes.unlock(node);
            _credit(node, jobId, j.fee);
            emit ProofAccepted(jobId, node, outputHash, instances[nIn:]);
        } else {
            j.status = Status.Rejected;
            nodes.unlock(node);
            (uint256 slashed, uint256 paidOn) = _slash(jobId, node);
            _credit(j.user, jobId, j.fee);
            uint256 refund = j.fee + _compensate(jobId, j.user, j.fee, paidOn);
            emit ProofRejected(jobId, node, reason, slashed, refund);
        }
    }

    // ---- anyone ----

    /// Settles a job whose node let the deadline pass without a proof: slash and refund.
    function expire(uint256 jobId) external nonReentrant {
        Job storage j = _jobs[jobId];
        _expect(jobId, Status.Assigned);
        if (block.number <= j.deadline) revert ProveWindowOpen(jobId);
        address node = j.node;
        j.status = Status.Expired;
        _release(j.fee);
        nodes.unlock(node);
        (uint256 slashed, uint256 paidOn) = _slash(jobId, node);
        _credit(j.user, jobId, j.fee);
        uint256 refund = j.fee + _compensate(jobId, j.user, j.fee, paidOn);
        emit JobExpired(jobId, node, slashed, refund);
    }

    // ---- views ----

    function getJob(uint256 jobId) external view returns (Job memory) {
        if (_jobs[jobId].status == Status.None) revert UnknownJob(jobId);
        return _jobs[jobId];
    }

    function getCircuit(bytes32 modelId) external view returns (Circuit memory) {
        if (_circuits[modelId].verifier == address(0)) revert NoCircuit(modelId);
        return _circuits[modelId];
    }

    function hasCircuit(bytes32 modelId) external view returns (bool) {
        return _circuits[modelId].verifier != address(0);
    }

    function outcome(uint256 jobId) external view returns (Settlement settlement, bytes32 digest) {
        Status s = _jobs[jobId].status;
        if (s == Status.None) revert UnknownJob(jobId);
        if (s == Status.Verified) return (Settlement.Verified, _jobs[jobId].outputHash);
        return (s == Status.Submitted || s == Status.Assigned ? Settlement.Open : Settlement.Failed, bytes32(0));
    }

    /// The job input hash a client computes off-chain for `input`.
    function inputHashOf(uint256[] calldata input) external pure returns (bytes32) {
        return _hashWords(input, 0, input.length);
    }

    // ---- internals ----

    /// Calls the verifier with a fixed gas budget under staticcall: true only if it returned true. A revert,
    /// running out of gas or a malformed return all count as an invalid proof.
    function _verify(address verifier, uint256 gasBudget, bytes calldata proof, uint256[] calldata instances)
        private
        view
        returns (bool)
    {
        (bool ok, bytes memory ret) =
            verifier.staticcall{gas: gasBudget}(abi.encodeCall(IZkVerifier.verifyProof, (proof, instances)));
        return ok && ret.length == 32 && abi.decode(ret, (uint256)) == 1;
    }

    /// keccak256 of `count` words of a calldata uint256 array from index `from`: the same bytes as
    /// abi.encodePacked over that slice.
    function _hashWords(uint256[] calldata words, uint256 from, uint256 count) private pure returns (bytes32 h) {
        if (from + count > words.length) revert SliceOutOfRange();
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            let len := mul(count, 0x20)
            calldatacopy(ptr, add(words.offset, mul(from, 0x20)), len)
            h := keccak256(ptr, len)
        }
    }

    function _expect(uint256 jobId, Status status) private view {
        Status s = _jobs[jobId].status;
        if (s != status) revert WrongStatus(jobId, uint8(s));
    }
}
