// Package local runs a cluster of notesync nodes on one Linux machine, for
// `notesync cluster`, the tests and the load tool (docs/PROTOCOL.md §2,
// §10 and §11). Each node runs under its own real LiteFS mount, as the
// exec child of `litefs mount`, the way the container runs it. A Launcher
// holds its directory's lock while it runs, clears the mounts and network
// namespaces an earlier run left behind, and starts again a node that
// dies.
//
// The lease is the launcher's own Consul lease server (package lease),
// every node a candidate and node1 the first primary, or with LeaseStatic
// node1's for good. Kill, Stop and Promote (or the same typed as commands)
// move the primary; Primary names it.
//
// With Netns each node has a network namespace of its own, the
// namespaces joined by a bridge, and the launcher forwards each node's
// ports from the machine into its namespace. Faults (Partition, OneWay,
// Heal, or the same typed as commands) then cut links between nodes with
// nftables rules on the bridge.
//
// A node never calls into this package: the launcher starts each node as
// a process of its own (the notesync binary under LiteFS), and
// `notesync cluster` is the launcher's command line.
package local
