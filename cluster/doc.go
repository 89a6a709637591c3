// Package cluster is what a notesync node runs to work with identical
// nodes as one: membership and cross-node messages over
// hashicorp/memberlist, awareness of the LiteFS mount the database lives
// on (who is primary, how far this replica has replicated), the
// announcements that tell the other nodes what was committed, forwarding
// of writes from replicas to the primary, pinning a tab to the node it
// asked for, and the replication state a node reports. It knows nothing
// about notes.
//
// Running several nodes on one machine is package cluster/local's.
package cluster
