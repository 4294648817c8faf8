package nsgrules

import (
	"net/netip"
	"strings"
)

// The three default tags exist in every network and are the only tags the
// simulator can resolve without help from Env.
const (
	tagInternet          = "Internet"
	tagVirtualNetwork    = "VirtualNetwork"
	tagAzureLoadBalancer = "AzureLoadBalancer"
)

// serviceTags is the set of Azure service tag names accepted in a rule,
// lower-cased. Azure knows more; this set covers the tags one meets in NSG
// rules. A name outside it is refused as an invalid address prefix, which is
// what Azure answers for a name it does not know (e.g. "any").
var serviceTags = toSet(
	"Internet", "VirtualNetwork", "AzureLoadBalancer",
	"ActionGroup", "ApiManagement", "AppConfiguration", "AppService",
	"AppServiceManagement", "ApplicationInsightsAvailability",
	"AzureActiveDirectory", "AzureActiveDirectoryDomainServices",
	"AzureAdvancedThreatProtection", "AzureArcInfrastructure",
	"AzureAttestation", "AzureBackup", "AzureBotService", "AzureCloud",
	"AzureCognitiveSearch", "AzureConnectors", "AzureContainerRegistry",
	"AzureCosmosDB", "AzureDatabricks", "AzureDataExplorerManagement",
	"AzureDevSpaces", "AzureDigitalTwins", "AzureEventGrid",
	"AzureFrontDoor.Backend", "AzureFrontDoor.FirstParty",
	"AzureFrontDoor.Frontend", "AzureInformationProtection", "AzureIoTHub",
	"AzureKeyVault", "AzureMachineLearning", "AzureMonitor",
	"AzureOpenDatasets", "AzurePlatformDNS", "AzurePlatformIMDS",
	"AzurePlatformLKM", "AzureResourceManager", "AzureSignalR",
	"AzureSiteRecovery", "AzureSpringCloud", "AzureStack",
	"AzureTrafficManager", "AzureUpdateDelivery", "BatchNodeManagement",
	"CognitiveServicesManagement", "DataFactory", "DataFactoryManagement",
	"Dynamics365ForMarketingEmail", "EventHub", "GatewayManager",
	"GuestAndHybridManagement", "HDInsight", "LogicApps",
	"LogicAppsManagement", "MicrosoftCloudAppSecurity",
	"MicrosoftContainerRegistry", "PowerBI", "PowerPlatformInfra",
	"PowerQueryOnline", "ServiceBus", "ServiceFabric", "Sql",
	"SqlManagement", "Storage", "StorageSyncService", "WindowsAdminCenter",
	"WindowsVirtualDesktop",
)

// globalOnlyTags have no regional variant.
var globalOnlyTags = toSet(tagInternet, tagVirtualNetwork, tagAzureLoadBalancer)

func toSet(names ...string) map[string]bool {
	s := make(map[string]bool, len(names))
	for _, n := range names {
		s[strings.ToLower(n)] = true
	}
	return s
}

// isServiceTag reports whether s names a service tag, case-insensitively:
// a known tag, or a known tag scoped to a region ("Storage.WestEurope").
// Regions are not checked against Azure's list, only for their shape
// (letters and digits), so a new region needs no change here.
func isServiceTag(s string) bool {
	l := strings.ToLower(s)
	if serviceTags[l] {
		return true
	}
	i := strings.LastIndexByte(l, '.')
	if i <= 0 {
		return false
	}
	name, region := l[:i], l[i+1:]
	return serviceTags[name] && !globalOnlyTags[name] && isAlnum(region)
}

func isAlnum(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// azureLoadBalancer is the source of Azure's health probes (and of the
// platform's DHCP, DNS and IMDS traffic): the AzureLoadBalancer tag.
var azureLoadBalancer = netip.MustParsePrefix("168.63.129.16/32")

// defaultVirtualNetwork is the VirtualNetwork tag when Env names no address
// space: every private range a virtual network may use.
var defaultVirtualNetwork = mustPrefixes("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")

// notInternet are ranges that the Internet tag never covers whatever the
// virtual network's address space: private and shared space, loopback,
// link-local, multicast, "this network", reserved and broadcast addresses.
// Documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
// 2001:db8::/32) are deliberately NOT excluded: tests and demos use them as
// stand-ins for public clients, and the simulator must treat them as such.
var notInternet = mustPrefixes(
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8",
	"169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/4",
	"240.0.0.0/4",
	"::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8",
)

func mustPrefixes(ss ...string) []netip.Prefix {
	ps := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		ps[i] = netip.MustParsePrefix(s)
	}
	return ps
}

func containsAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if normalisePrefix(p).Contains(a) {
			return true
		}
	}
	return false
}

// virtualNetwork returns the VirtualNetwork tag's prefixes. Azure's
// VirtualNetwork tag also covers 168.63.129.16 (a deny from VirtualNetwork
// also stops load balancer probes), so the simulator includes it too.
func (e Env) virtualNetwork() []netip.Prefix {
	vnet := e.VirtualNetworkPrefixes
	if vnet == nil {
		vnet = defaultVirtualNetwork
	}
	return append(vnet[:len(vnet):len(vnet)], azureLoadBalancer)
}

// tagContains reports whether the service tag contains address a.
func (e Env) tagContains(tag string, a netip.Addr) bool {
	switch {
	case strings.EqualFold(tag, tagVirtualNetwork):
		return containsAny(e.virtualNetwork(), a)
	case strings.EqualFold(tag, tagAzureLoadBalancer):
		return azureLoadBalancer.Contains(a)
	case strings.EqualFold(tag, tagInternet):
		return !containsAny(e.virtualNetwork(), a) && !containsAny(notInternet, a) &&
			a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	for name, ps := range e.ServiceTagPrefixes {
		if strings.EqualFold(name, tag) {
			return containsAny(ps, a)
		}
	}
	return false
}
