// Package grafana holds the Grafana dashboard of the upstreamtier plugin's metrics; its tests check it against metrics.go.
package grafana
