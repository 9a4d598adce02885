// Package kubernetes holds the Kubernetes manifests that run the upstreamtier build of CoreDNS as cluster DNS; its tests validate them.
package kubernetes
