// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ModelRegistry} from "./ModelRegistry.sol";
import {NodeRegistry} from "./NodeRegistry.sol";
import {StakeDraw} from "./StakeDraw.sol";
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
/// slashes the node and refunds the user (fee plus the slashed stake). Pull payments throughout: the
/// contract's balance always equals escrowed fees plus withdrawable credits.
///
/// Binding a proof to its job: the circuit's inputs are public instances. The user posts the quantized
/// input (BN254 field elements) with the job; the contract stores inputHash = keccak256 of those words
/// (abi.encodePacked, 32 bytes big-endian each) and, when a proof arrives, hashes the proof's input
/// instances and compares. Carrying the input on-chain also makes it available to the node by
/// construction, and the per-model bound on input values keeps every accepted job provable, so a user
/// cannot get a node slashed with an input it cannot prove.
contract ZkJobs is ReentrancyGuard {
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

    ModelRegistry public immutable models;
    NodeRegistry public immutable nodes;
    IRandomness public immutable randomness;
    uint64 public immutable proveWindow; // blocks after assignment
    uint256 public immutable slashBps;

    uint256 public nextJobId = 1;
    uint256 public totalEscrow;
    uint256 public totalCredits;
    mapping(bytes32 => Circuit) private _circuits;
    mapping(uint256 => Job) private _jobs;
    mapping(address => uint256) public credits;

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
    event ProofRejected(uint256 indexed jobId, address indexed node, string reason, uint256 slashed, uint256 refund);
    event JobExpired(uint256 indexed jobId, address indexed node, uint256 slashed, uint256 refund);
    event JobRefunded(uint256 indexed jobId, address indexed user, uint256 amount, string reason);
    event Credited(address indexed account, uint256 indexed jobId, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);

    constructor(
        ModelRegistry models_,
        NodeRegistry nodes_,
        IRandomness randomness_,
        uint64 proveWindow_,
        uint256 slashBps_
    ) {
        require(proveWindow_ > 0, "ZkJobs: zero prove window");
        require(slashBps_ <= 10_000, "ZkJobs: bps above 10000");
        models = models_;
        nodes = nodes_;
        randomness = randomness_;
        proveWindow = proveWindow_;
        slashBps = slashBps_;
    }

    /// Slashed stake arrives from the registry; nobody else may send coin outside a function.
    receive() external payable {
        require(msg.sender == address(nodes), "ZkJobs: direct payments refused");
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
        require(models.getModel(modelId).owner == msg.sender, "ZkJobs: not the model owner");
        require(_circuits[modelId].verifier == address(0), "ZkJobs: circuit already registered");
        require(verifier.code.length > 0, "ZkJobs: verifier has no code");
        require(nInputs > 0 && nInputs <= MAX_INPUTS, "ZkJobs: inputs must be 1..4096");
        require(nOutputs > 0 && nOutputs <= MAX_OUTPUTS, "ZkJobs: outputs must be 1..1024");
        require(verifyGas > 0 && verifyGas <= MAX_VERIFY_GAS, "ZkJobs: verify gas out of range");
        require(inputMax < FIELD_MODULUS, "ZkJobs: input bound outside the field");
        _circuits[modelId] = Circuit(verifier, verifier.codehash, vkHash, nInputs, nOutputs, verifyGas, inputMax);
        emit CircuitRegistered(modelId, verifier, vkHash, nInputs, nOutputs, verifyGas, inputMax);
    }

    // ---- users ----

    /// Escrows the fee for proving `modelId` on `input` (the circuit's quantized input instances).
    function submit(bytes32 modelId, uint256[] calldata input) external payable returns (uint256 jobId) {
        Circuit storage c = _circuits[modelId];
        require(c.verifier != address(0), "ZkJobs: model has no circuit");
        require(input.length == c.nInputs, "ZkJobs: wrong input length");
        uint256 bound = c.inputMax;
        for (uint256 i = 0; i < input.length; i++) {
            require(input[i] <= bound, "ZkJobs: input value out of range");
        }
        require(msg.value >= models.getModel(modelId).price, "ZkJobs: fee below price");
        jobId = nextJobId++;
        Job storage j = _jobs[jobId];
        j.user = msg.sender;
        j.modelId = modelId;
        j.inputHash = _hashWords(input, 0, input.length);
        j.status = Status.Submitted;
        j.submitBlock = uint64(block.number);
        j.fee = msg.value;
        totalEscrow += msg.value;
        emit JobSubmitted(jobId, msg.sender, modelId, j.inputHash, msg.value, input);
        _freezeCandidates(jobId, modelId);
    }

    function _freezeCandidates(uint256 jobId, bytes32 modelId) private {
        (address[] memory cands, uint256[] memory weights) = nodes.candidates(modelId);
        require(cands.length > 0, "ZkJobs: no node serves the model");
        _jobs[jobId].candidatesHash = StakeDraw.digest(cands, weights);
        emit StakeDraw.CandidatesFrozen(jobId, cands, weights);
    }

    /// Draws the job's node by stake over the candidates frozen at submission (see StakeDraw); anyone may
    /// call it from the block after submission. A job that can no longer be assigned (no candidate still
    /// registered, or randomness expired) is refunded instead.
    function assign(uint256 jobId, address[] calldata cands, uint256[] calldata frozenWeights) external nonReentrant {
        Job storage j = _jobs[jobId];
        require(j.status == Status.Submitted, "ZkJobs: job not awaiting assignment");
        require(StakeDraw.digest(cands, frozenWeights) == j.candidatesHash, "ZkJobs: candidates differ from submission");
        if (randomness.expired(j.submitBlock)) {
            _refund(jobId, "assignment expired");
            return;
        }
        require(randomness.ready(j.submitBlock), "ZkJobs: assignment needs a later block");
        (uint256[] memory weights, uint256 live) = StakeDraw.liveWeights(nodes, cands, frozenWeights);
        if (live == 0) {
            _refund(jobId, "no eligible node");
            return;
        }
        address node = StakeDraw.draw(cands, weights, 1, randomness.seed(jobId, j.submitBlock))[0];
        j.status = Status.Assigned;
        j.node = node;
        j.deadline = uint64(block.number) + proveWindow;
        nodes.lock(node);
        emit JobAssigned(jobId, node, j.deadline);
    }

    // ---- the assigned node ----

    /// Settles the job with the node's proof. `instances` are the proof's public instances: the job's
    /// input, then the model's output. Whatever the assigned node submits decides the job: a proof that
    /// does not verify, or verifies for another input, slashes it.
    function submitProof(uint256 jobId, bytes calldata proof, uint256[] calldata instances) external nonReentrant {
        Job storage j = _jobs[jobId];
        require(j.status == Status.Assigned, "ZkJobs: job not open");
        require(msg.sender == j.node, "ZkJobs: not the assigned node");
        require(block.number <= j.deadline, "ZkJobs: proof deadline passed");
        Circuit storage c = _circuits[j.modelId];
        uint256 verifyGas = c.verifyGas;
        // Revert rather than judge when the sender did not bring enough gas (EIP-150 keeps 1/64 back).
        require(gasleft() >= verifyGas + verifyGas / 63 + SETTLE_GAS_RESERVE, "ZkJobs: not enough gas to verify");

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
        totalEscrow -= j.fee;
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
            uint256 slashed = nodes.slash(node, slashBps);
            uint256 refund = j.fee + slashed;
            _credit(j.user, jobId, refund);
            emit ProofRejected(jobId, node, reason, slashed, refund);
        }
    }

    // ---- anyone ----

    /// Settles a job whose node let the deadline pass without a proof: slash and refund.
    function expire(uint256 jobId) external nonReentrant {
        Job storage j = _jobs[jobId];
        require(j.status == Status.Assigned, "ZkJobs: job not open");
        require(block.number > j.deadline, "ZkJobs: proof window still open");
        address node = j.node;
        j.status = Status.Expired;
        totalEscrow -= j.fee;
        nodes.unlock(node);
        uint256 slashed = nodes.slash(node, slashBps);
        uint256 refund = j.fee + slashed;
        _credit(j.user, jobId, refund);
        emit JobExpired(jobId, node, slashed, refund);
    }

    function withdraw() external nonReentrant {
        uint256 amount = credits[msg.sender];
        require(amount > 0, "ZkJobs: nothing to withdraw");
        credits[msg.sender] = 0;
        totalCredits -= amount;
        emit Withdrawn(msg.sender, amount);
        Address.sendValue(payable(msg.sender), amount);
    }

    // ---- views ----

    function getJob(uint256 jobId) external view returns (Job memory) {
        require(_jobs[jobId].status != Status.None, "ZkJobs: unknown job");
        return _jobs[jobId];
    }

    function getCircuit(bytes32 modelId) external view returns (Circuit memory) {
        require(_circuits[modelId].verifier != address(0), "ZkJobs: model has no circuit");
        return _circuits[modelId];
    }

    function hasCircuit(bytes32 modelId) external view returns (bool) {
        return _circuits[modelId].verifier != address(0);
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
        require(from + count <= words.length, "ZkJobs: slice out of range");
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            let len := mul(count, 0x20)
            calldatacopy(ptr, add(words.offset, mul(from, 0x20)), len)
            h := keccak256(ptr, len)
        }
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
