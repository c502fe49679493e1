"""BatchNorm folding on the traced graph (torch.fx), for fewer ops at inference with the same outputs: a
BatchNorm2d fed only by a Conv2d is fused into it whatever the modules are named; any other BN stays."""

from __future__ import annotations

import copy

from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _pairs(graph: fx.GraphModule) -> list[tuple[fx.Node, fx.Node]]:
    modules = dict(graph.named_modules())

    def is_call(node, kind) -> bool:
        return isinstance(node, fx.Node) and node.op == "call_module" and isinstance(modules[node.target], kind)

    return [(node.args[0], node) for node in graph.graph.nodes
            if is_call(node, nn.BatchNorm2d) and modules[node.target].track_running_stats
            and is_call(node.args[0], nn.Conv2d) and len(node.args[0].users) == 1]


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) module names where the BN normalises the output of a conv that nothing else reads."""
    return [(conv.target, bn.target) for conv, bn in _pairs(fx.symbolic_trace(model))]


def fold_batchnorm(model: nn.Module) -> fx.GraphModule:
    """An eval-mode copy (a GraphModule) with every conv -> BN pair fused into one conv; ``model`` is untouched."""
    graph = fx.symbolic_trace(copy.deepcopy(model).eval())
    for conv, bn in _pairs(graph):
        fused = fuse_conv_bn_eval(graph.get_submodule(conv.target), graph.get_submodule(bn.target))
        graph.add_submodule(conv.target, fused)
        bn.replace_all_uses_with(conv)
        graph.graph.erase_node(bn)
    graph.delete_all_unused_submodules()
    graph.recompile()
    return graph
