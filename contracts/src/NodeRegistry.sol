// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ModelRegistry} from "./ModelRegistry.sol";

/// @title NodeRegistry
/// @notice Staked operators. A node stakes native coin, names the models it serves, and can be drawn
/// for jobs by authorised scheme contracts, which may lock it while a job is open and slash it.
/// Leaving is two-step: request unbonding (the node stops being drawn), then withdraw after a delay,
/// and never while assigned to an open job.
contract NodeRegistry is Ownable, ReentrancyGuard {
    uint256 public constant MAX_MODELS_PER_NODE = 16;
    uint256 public constant MAX_NODES_PER_MODEL = 64;
    uint256 public constant MAX_ENDPOINT_BYTES = 256;
    uint256 public constant MAX_PUBKEY_BYTES = 128;

    struct Node {
        uint256 stake;
        string endpoint;
        bytes pubkey;
        uint64 unbondBlock; // 0 while bonded; else the block from which the stake may be withdrawn
        uint32 openJobs;
        bool registered;
    }

    ModelRegistry public immutable models;
    uint256 public immutable minStake;
    uint64 public immutable unbondDelay; // in blocks

    mapping(address => Node) private _nodes;
    mapping(address => bytes32[]) private _servedBy;
    mapping(bytes32 => address[]) private _servers;
    mapping(bytes32 => mapping(address => uint256)) private _serverIndexPlusOne;
    mapping(address => bool) public isScheme;
    uint256 public totalStaked;

    event SchemeSet(address indexed scheme, bool allowed);
    event NodeRegistered(address indexed node, uint256 stake, string endpoint, bytes pubkey, bytes32[] modelIds);
    event StakeAdded(address indexed node, uint256 amount, uint256 stake);
    event UnbondRequested(address indexed node, uint64 withdrawableAt);
    event StakeWithdrawn(address indexed node, uint256 amount);
    event NodeLocked(address indexed node, uint32 openJobs);
    event NodeUnlocked(address indexed node, uint32 openJobs);
    event Slashed(address indexed node, uint256 amount, uint256 remaining, address indexed by);

    error NotScheme(address caller);
    error ZeroMinStake();
    error ZeroScheme();
    error AlreadyRegistered();
    error StakeBelowMinimum(uint256 sent, uint256 minimum);
    error EndpointLength(uint256 length);
    error PubkeyTooLong(uint256 length);
    error ModelCount(uint256 count);
    error UnknownModel(bytes32 modelId);
    error DuplicateModel(bytes32 modelId);
    error TooManyNodes(bytes32 modelId);
    error NotRegistered(address node);
    error Unbonding();
    error ZeroTopUp();
    error AlreadyUnbonding();
    error OpenJobs(uint32 openJobs);
    error UnbondNotRequested();
    error UnbondingDelay(uint64 withdrawableAt);
    error NotLocked(address node);
    error BpsAbove10000();

    modifier onlyScheme() {
        if (!isScheme[msg.sender]) revert NotScheme(msg.sender);
        _;
    }

    constructor(ModelRegistry models_, uint256 minStake_, uint64 unbondDelay_) Ownable(msg.sender) {
        if (minStake_ == 0) revert ZeroMinStake();
        models = models_;
        minStake = minStake_;
        unbondDelay = unbondDelay_;
    }

    function setScheme(address scheme, bool allowed) external onlyOwner {
        if (scheme == address(0)) revert ZeroScheme();
        isScheme[scheme] = allowed;
        emit SchemeSet(scheme, allowed);
    }

    // ---- operators ----

    function register(string calldata endpoint, bytes calldata pubkey, bytes32[] calldata modelIds) external payable {
        Node storage n = _nodes[msg.sender];
        if (n.registered) revert AlreadyRegistered();
        if (msg.value < minStake) revert StakeBelowMinimum(msg.value, minStake);
        uint256 elen = bytes(endpoint).length;
        if (!(elen > 0 && elen <= MAX_ENDPOINT_BYTES)) revert EndpointLength(elen);
        if (pubkey.length > MAX_PUBKEY_BYTES) revert PubkeyTooLong(pubkey.length);
        if (!(modelIds.length > 0 && modelIds.length <= MAX_MODELS_PER_NODE)) revert ModelCount(modelIds.length);
        for (uint256 i = 0; i < modelIds.length; i++) {
            bytes32 m = modelIds[i];
            if (!models.exists(m)) revert UnknownModel(m);
            if (_serverIndexPlusOne[m][msg.sender] != 0) revert DuplicateModel(m);
            if (_servers[m].length >= MAX_NODES_PER_MODEL) revert TooManyNodes(m);
            _servers[m].push(msg.sender);
            _serverIndexPlusOne[m][msg.sender] = _servers[m].length;
            _servedBy[msg.sender].push(m);
        }
        n.stake = msg.value;
        n.endpoint = endpoint;
        n.pubkey = pubkey;
        n.unbondBlock = 0;
        n.registered = true;
        totalStaked += msg.value;
        emit NodeRegistered(msg.sender, msg.value, endpoint, pubkey, modelIds);
    }

    function topUp() external payable {
        Node storage n = _nodes[msg.sender];
        if (!n.registered) revert NotRegistered(msg.sender);
        if (n.unbondBlock != 0) revert Unbonding();
        if (msg.value == 0) revert ZeroTopUp();
        n.stake += msg.value;
        totalStaked += msg.value;
        emit StakeAdded(msg.sender, msg.value, n.stake);
    }

    function requestUnbond() external {
        Node storage n = _nodes[msg.sender];
        if (!n.registered) revert NotRegistered(msg.sender);
        if (n.unbondBlock != 0) revert AlreadyUnbonding();
        if (n.openJobs != 0) revert OpenJobs(n.openJobs);
        n.unbondBlock = uint64(block.number) + unbondDelay;
        emit UnbondRequested(msg.sender, n.unbondBlock);
    }

    /// Pays out the whole stake and deregisters; checks-effects-interactions plus a reentrancy guard.
    function withdrawStake() external nonReentrant {
        Node storage n = _nodes[msg.sender];
        if (!n.registered) revert NotRegistered(msg.sender);
        if (n.unbondBlock == 0) revert UnbondNotRequested();
        if (block.number < n.unbondBlock) revert UnbondingDelay(n.unbondBlock);
        if (n.openJobs != 0) revert OpenJobs(n.openJobs);
        uint256 amount = n.stake;
        bytes32[] storage served = _servedBy[msg.sender];
        for (uint256 i = 0; i < served.length; i++) {
            _removeServer(served[i], msg.sender);
        }
        delete _servedBy[msg.sender];
        delete _nodes[msg.sender];
        totalStaked -= amount;
        emit StakeWithdrawn(msg.sender, amount);
        Address.sendValue(payable(msg.sender), amount);
    }

    // ---- schemes ----

    function lock(address node) external onlyScheme {
        Node storage n = _nodes[node];
        if (!n.registered) revert NotRegistered(node);
        n.openJobs += 1;
        emit NodeLocked(node, n.openJobs);
    }

    function unlock(address node) external onlyScheme {
        Node storage n = _nodes[node];
        if (n.openJobs == 0) revert NotLocked(node);
        n.openJobs -= 1;
        emit NodeUnlocked(node, n.openJobs);
    }

    /// Takes `bps`/10000 of the node's stake and sends it to the calling scheme, which distributes it.
    function slash(address node, uint256 bps) external onlyScheme nonReentrant returns (uint256 amount) {
        if (bps > 10_000) revert BpsAbove10000();
        Node storage n = _nodes[node];
        if (!n.registered) revert NotRegistered(node);
        amount = (n.stake * bps) / 10_000;
        n.stake -= amount;
        totalStaked -= amount;
        emit Slashed(node, amount, n.stake, msg.sender);
        if (amount > 0) {
            Address.sendValue(payable(msg.sender), amount);
        }
    }

    // ---- views ----

    /// Nodes that may be drawn for `modelId` now (bonded, stake >= minimum), with their stakes as weights.
    function candidates(bytes32 modelId) external view returns (address[] memory nodes, uint256[] memory weights) {
        address[] storage all = _servers[modelId];
        uint256 count = 0;
        for (uint256 i = 0; i < all.length; i++) {
            if (_eligible(_nodes[all[i]])) count++;
        }
        nodes = new address[](count);
        weights = new uint256[](count);
        uint256 k = 0;
        for (uint256 i = 0; i < all.length; i++) {
            Node storage n = _nodes[all[i]];
            if (_eligible(n)) {
                nodes[k] = all[i];
                weights[k] = n.stake;
                k++;
            }
        }
    }

    function getNode(address node) external view returns (Node memory) {
        return _nodes[node];
    }

    function servedModels(address node) external view returns (bytes32[] memory) {
        return _servedBy[node];
    }

    function servers(bytes32 modelId) external view returns (address[] memory) {
        return _servers[modelId];
    }

    function isRegistered(address node) external view returns (bool) {
        return _nodes[node].registered;
    }

    function stakeOf(address node) external view returns (uint256) {
        return _nodes[node].stake;
    }

    function _eligible(Node storage n) private view returns (bool) {
        return n.registered && n.unbondBlock == 0 && n.stake >= minStake;
    }

    function _removeServer(bytes32 m, address node) private {
        uint256 idx = _serverIndexPlusOne[m][node];
        if (idx == 0) return;
        address[] storage list = _servers[m];
        address last = list[list.length - 1];
        list[idx - 1] = last;
        _serverIndexPlusOne[m][last] = idx;
        list.pop();
        delete _serverIndexPlusOne[m][node];
    }
}
