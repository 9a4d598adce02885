// Package systemd holds the systemd unit and the site Corefile of a LAN name server running the upstreamtier build of CoreDNS; its tests check the unit.
package systemd
