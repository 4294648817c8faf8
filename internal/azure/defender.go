package azure

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/security/armsecurity"

	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// computeAPIVersion is the Microsoft.Compute api-version used to read a
// VM's network profile (the project has no armcompute dependency for one
// GET).
const computeAPIVersion = "2024-07-01"

// DefenderPolicies reads the Defender for Cloud JIT policies of a
// subscription, or of one of its resource groups, and resolves each VM to
// its network interfaces (from the VM's own networkProfile) and the NSGs on
// their paths: the subnets' NSGs, then the NIC's.
func (c *Client) DefenderPolicies(ctx context.Context, subscriptionID, resourceGroup string) ([]jit.DefenderPolicy, error) {
	const op = "list Defender JIT network access policies"
	client, err := armsecurity.NewJitNetworkAccessPoliciesClient(subscriptionID, c.cred, c.armOptions)
	if err != nil {
		return nil, &Error{Kind: KindInvalid, Op: "prepare", Message: err.Error(), Err: err}
	}
	var raw []*armsecurity.JitNetworkAccessPolicy
	scope := "/subscriptions/" + subscriptionID
	if resourceGroup != "" {
		scope += "/resourceGroups/" + resourceGroup
		for pager := client.NewListByResourceGroupPager(resourceGroup, nil); pager.More(); {
			page, err := pager.NextPage(ctx)
			if err != nil {
				return nil, newError(op, scope, err)
			}
			raw = append(raw, page.Value...)
		}
	} else {
		for pager := client.NewListPager(nil); pager.More(); {
			page, err := pager.NextPage(ctx)
			if err != nil {
				return nil, newError(op, scope, err)
			}
			raw = append(raw, page.Value...)
		}
	}
	nics := map[string]jit.DefenderNIC{}
	var out []jit.DefenderPolicy
	for _, p := range raw {
		if p == nil || p.Properties == nil {
			continue
		}
		dp := jit.DefenderPolicy{ID: deref(p.ID), Name: deref(p.Name)}
		for _, vm := range p.Properties.VirtualMachines {
			if vm == nil {
				continue
			}
			dv := jit.DefenderVM{ID: deref(vm.ID)}
			for _, port := range vm.Ports {
				if port == nil {
					continue
				}
				dv.Ports = append(dv.Ports, jit.DefenderPort{
					Number: int64(deref(port.Number)), Protocol: string(deref(port.Protocol)),
					Sources:     oneOrMany(port.AllowedSourceAddressPrefix, port.AllowedSourceAddressPrefixes),
					MaxDuration: deref(port.MaxRequestAccessDuration),
				})
			}
			nicIDs, err := c.vmNetworkInterfaces(ctx, dv.ID)
			if err != nil {
				return nil, err
			}
			for _, id := range nicIDs {
				key := strings.ToLower(id)
				n, ok := nics[key]
				if !ok {
					nic, err := c.GetNetworkInterface(ctx, id)
					if err != nil {
						return nil, err
					}
					n = jit.DefenderNIC{ID: nic.ID}
					for _, ic := range nic.IPConfigurations {
						if ic.PrivateIP != "" {
							n.Addresses = append(n.Addresses, ic.PrivateIP)
						}
						if ic.SubnetNSGID != "" && !containsFold(n.NSGIDs, ic.SubnetNSGID) {
							n.NSGIDs = append(n.NSGIDs, ic.SubnetNSGID)
						}
					}
					if nic.NSGID != "" && !containsFold(n.NSGIDs, nic.NSGID) {
						n.NSGIDs = append(n.NSGIDs, nic.NSGID)
					}
					nics[key] = n
				}
				dv.NICs = append(dv.NICs, n)
			}
			dp.VMs = append(dp.VMs, dv)
		}
		for _, rq := range p.Properties.Requests {
			if rq == nil {
				continue
			}
			for _, vm := range rq.VirtualMachines {
				if vm == nil {
					continue
				}
				for _, port := range vm.Ports {
					if port == nil {
						continue
					}
					r := jit.DefenderRequest{
						VMID: deref(vm.ID), Port: int64(deref(port.Number)), Status: string(deref(port.Status)),
						Sources: oneOrMany(port.AllowedSourceAddressPrefix, port.AllowedSourceAddressPrefixes), Requestor: deref(rq.Requestor),
					}
					if port.EndTimeUTC != nil {
						r.End = *port.EndTimeUTC
					}
					dp.Requests = append(dp.Requests, r)
				}
			}
		}
		out = append(out, dp)
	}
	return out, nil
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// vmNetworkInterfaces reads a VM and returns the ids of its network
// interfaces, from its networkProfile.
func (c *Client) vmNetworkInterfaces(ctx context.Context, vmID string) ([]string, error) {
	vm, err := c.getVM(ctx, vmID)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range vm.Properties.NetworkProfile.NetworkInterfaces {
		if n.ID != "" {
			out = append(out, n.ID)
		}
	}
	return out, nil
}

type vmDoc struct {
	Location   string `json:"location"`
	Properties struct {
		NetworkProfile struct {
			NetworkInterfaces []struct {
				ID string `json:"id"`
			} `json:"networkInterfaces"`
		} `json:"networkProfile"`
	} `json:"properties"`
}

func (c *Client) getVM(ctx context.Context, vmID string) (vmDoc, error) {
	const op = "get virtual machine"
	if !strings.Contains(strings.ToLower(vmID), "/providers/microsoft.compute/virtualmachines/") || !strings.HasPrefix(vmID, "/subscriptions/") {
		return vmDoc{}, &Error{Kind: KindInvalid, Op: op, ResourceID: vmID, Message: fmt.Sprintf("%q is not a virtual machine id", vmID)}
	}
	pipeline, endpoint, err := c.rawClient()
	if err != nil {
		return vmDoc{}, err
	}
	req, err := runtime.NewRequest(ctx, http.MethodGet, runtime.JoinPaths(endpoint, vmID))
	if err != nil {
		return vmDoc{}, newError(op, vmID, err)
	}
	q := req.Raw().URL.Query()
	q.Set("api-version", computeAPIVersion)
	req.Raw().URL.RawQuery = q.Encode()
	resp, err := pipeline.Do(req)
	if err != nil {
		return vmDoc{}, newError(op, vmID, err)
	}
	if !runtime.HasStatusCode(resp, http.StatusOK) {
		return vmDoc{}, newError(op, vmID, runtime.NewResponseError(resp))
	}
	var vm vmDoc
	body, err := runtime.Payload(resp)
	if err != nil {
		return vmDoc{}, newError(op, vmID, err)
	}
	if err := json.Unmarshal(body, &vm); err != nil {
		return vmDoc{}, &Error{Kind: KindInvalid, Op: op, ResourceID: vmID, Message: "the answer is not a virtual machine: " + err.Error(), Err: err}
	}
	return vm, nil
}
