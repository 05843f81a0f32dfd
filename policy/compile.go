package policy

import (
	"fmt"
	"net/netip"

	"github.com/portcullis/portcullis/config"
)

// compileHost returns routes[i].host in the canonical form the matcher
// compares with (see ParseHost), or a problem naming the key and value.
func compileHost(i int, r config.Route) (string, []string) {
	host := r.Host
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		host = "[" + host + "]" // a bare IPv6 address is unambiguous here
	}
	h, err := ParseHost(host)
	if err != nil {
		return "", []string{fmt.Sprintf("routes[%d].host: %q is not a host name or IP address (want e.g. api.example.com; no scheme, path, userinfo, wildcard or more than one port)", i, r.Host)}
	}
	return h, nil
}

// checkMethods reports every routes[i].methods entry that requests could
// never carry: methods are case-sensitive upper-case tokens (RFC 9110
// §9.1), and CONNECT and PRI are refused before routing.
func checkMethods(i int, r config.Route) []string {
	var errs []string
	for j, m := range r.Methods {
		if ParseMethod(m) != nil {
			why := "is not an upper-case HTTP method token (methods are case-sensitive: GET, not get)"
			if m == "CONNECT" || m == "PRI" {
				why = "is never forwarded: Portcullis refuses it before routing"
			}
			errs = append(errs, fmt.Sprintf("routes[%d].methods[%d]: %q %s", i, j, m, why))
		}
	}
	return errs
}
