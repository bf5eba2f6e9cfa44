// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title ModelRegistry
/// @notice Content-addressed models: a modelId is keccak256 of the model's canonical manifest JSON.
/// The registry records what the chain must know to settle jobs: the weights root, how outputs are
/// compared (policy + threshold) and the price a node earns per job.
contract ModelRegistry {
    /// Output policies; keep in step with veriml.types.POLICY_CODES.
    uint8 public constant POLICY_EXACT = 0;
    uint8 public constant POLICY_TOKENS = 1;
    uint8 public constant POLICY_PHASH = 2;
    uint8 public constant POLICY_TOLERANCE = 3;

    struct Model {
        address owner;
        bytes32 weightsRoot;
        uint8 policy;
        uint32 threshold;
        uint256 price; // wei per node per job
        bool exists;
    }

    error ZeroModelId();
    error ZeroWeightsRoot();
    error ModelExists(bytes32 modelId);
    error UnknownPolicy(uint8 policy);
    error PhashThresholdAbove64(uint32 threshold);
    error ThresholdNotAllowed(uint8 policy);
    error UnknownModel(bytes32 modelId);
    error NotModelOwner(bytes32 modelId);
    error ZeroPrice();

    mapping(bytes32 => Model) private _models;
    bytes32[] public modelIds;

    event ModelRegistered(bytes32 indexed modelId, address indexed owner, bytes32 weightsRoot, uint8 policy, uint32 threshold, uint256 price);
    event PriceChanged(bytes32 indexed modelId, uint256 price);

    function register(bytes32 modelId, bytes32 weightsRoot, uint8 policy, uint32 threshold, uint256 price) external {
        if (modelId == bytes32(0)) revert ZeroModelId();
        if (weightsRoot == bytes32(0)) revert ZeroWeightsRoot();
        if (_models[modelId].exists) revert ModelExists(modelId);
        if (policy > POLICY_TOLERANCE) revert UnknownPolicy(policy);
        // A free model would let anyone who can make its nodes miss a window farm their stake, and pays
        // nodes nothing for honest work.
        if (price == 0) revert ZeroPrice();
        // A phash threshold is a Hamming distance between 64-bit hashes.
        if (!(policy != POLICY_PHASH || threshold <= 64)) revert PhashThresholdAbove64(threshold);
        if (!(policy == POLICY_PHASH || policy == POLICY_TOLERANCE || threshold == 0)) revert ThresholdNotAllowed(policy);
        _models[modelId] = Model(msg.sender, weightsRoot, policy, threshold, price, true);
        modelIds.push(modelId);
        emit ModelRegistered(modelId, msg.sender, weightsRoot, policy, threshold, price);
    }

    function setPrice(bytes32 modelId, uint256 price) external {
        if (!_models[modelId].exists) revert UnknownModel(modelId);
        if (_models[modelId].owner != msg.sender) revert NotModelOwner(modelId);
        if (price == 0) revert ZeroPrice();
        _models[modelId].price = price;
        emit PriceChanged(modelId, price);
    }

    function exists(bytes32 modelId) external view returns (bool) {
        return _models[modelId].exists;
    }

    function getModel(bytes32 modelId) external view returns (Model memory) {
        if (!_models[modelId].exists) revert UnknownModel(modelId);
        return _models[modelId];
    }

    function modelCount() external view returns (uint256) {
        return modelIds.length;
    }
}
