package api

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/wasmtask/wasmtask/cluster"
	"github.com/wasmtask/wasmtask/plugins"
)

// Replicated plugins in cluster mode (cluster/plugins.go): the leader
// validates a deploy, replicates it as a raft entry holding the module,
// and answers once it is committed (a majority holds the bytes) and
// active on the leader; every node activates it in its own registry.

// PluginApplier is a node's registry as the cluster drives it
// (cluster.Config.Plugins).
type PluginApplier struct{ Reg *plugins.Registry }

// ApplyPlugin carries out a committed plugin change on this node.
func (a PluginApplier) ApplyPlugin(ctx context.Context, c cluster.PluginChange) (any, error) {
	var m *plugins.Manifest
	if len(c.Manifest) > 0 && string(c.Manifest) != "null" {
		var err error
		if m, err = plugins.ParseManifest(c.Manifest); err != nil {
			return nil, err
		}
	}
	switch c.Op {
	case "deploy":
		if len(c.Module) == 0 {
			return nil, fmt.Errorf("plugin %s: deploy of %s without its module", c.Name, c.Version)
		}
		return a.Reg.Deploy(ctx, c.Name, c.Module, m, c.Source)
	case "activate":
		if len(c.Module) > 0 {
			if _, err := a.Reg.StoreModule(c.Module); err != nil {
				return nil, err
			}
		}
		return a.Reg.ActivateStored(ctx, c.Name, c.Version, m, c.Size, c.Source)
	case "store":
		return a.Reg.StoreModule(c.Module)
	}
	return nil, fmt.Errorf("unknown plugin change %q", c.Op)
}

// Module returns a stored module (for raft snapshots).
func (a PluginApplier) Module(version string) ([]byte, error) { return a.Reg.Module(version) }

// ClusterDeployer replicates deploys and rollbacks (Config.Deployer of the
// leader's Server).
type ClusterDeployer struct {
	Reg  *plugins.Registry
	Node *cluster.Node
}

// Deploy validates the module here, then replicates it; it answers once
// the deploy is committed and active on this node.
func (d ClusterDeployer) Deploy(ctx context.Context, name string, wasm []byte, m *plugins.Manifest, source string) (plugins.DeployResult, error) {
	version, err := d.Reg.Validate(ctx, name, wasm, m)
	if err != nil {
		return plugins.DeployResult{}, err
	}
	return d.propose(ctx, cluster.PluginChange{Op: "deploy", Name: name, Version: version, Source: source, Size: len(wasm), Module: wasm}, m)
}

// Rollback replicates the activation Rollback would make here, with the
// module's bytes (a node that lacks them stores them first).
func (d ClusterDeployer) Rollback(ctx context.Context, name, version string) (plugins.DeployResult, error) {
	target, err := d.Reg.RollbackTarget(name, version)
	if err != nil {
		return plugins.DeployResult{}, err
	}
	wasm, err := d.Reg.Module(target.Version)
	if err != nil {
		return plugins.DeployResult{}, err
	}
	return d.propose(ctx, cluster.PluginChange{Op: "activate", Name: name, Version: target.Version, Source: "rollback", Size: target.Size, Module: wasm}, target.Manifest)
}

func (d ClusterDeployer) propose(ctx context.Context, c cluster.PluginChange, m *plugins.Manifest) (plugins.DeployResult, error) {
	if m != nil {
		b, err := json.Marshal(m)
		if err != nil {
			return plugins.DeployResult{}, err
		}
		c.Manifest = b
	}
	v, err := d.Node.ProposePlugin(ctx, c)
	if err != nil {
		return plugins.DeployResult{}, clusterProposeError(err)
	}
	res, _ := v.(plugins.DeployResult)
	return res, nil
}

func clusterProposeError(err error) error {
	if e := clusterError(err); e.Code == "no_leader" {
		e.Message = "the deploy was not replicated: " + e.Message + "; retry"
		return e
	}
	return err
}
