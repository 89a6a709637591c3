package feed

import (
	"encoding/json"
	"errors"
	"time"

	"notesync/app"
)

// What a node's feed tells the other nodes' feeds of the changes it
// committed (Replication.Announce), so that a replica can push them
// without reading them back once its copy of the database holds them
// (Replication.C). The
// change log stays the truth: a replica that gets nothing, or gets them
// out of order, reads.

// sharedChanges is the encoding: the node they were made on, and each
// change.
type sharedChanges struct {
	Node    string         `json:"n"`
	Changes []sharedChange `json:"c"`
}

type sharedChange struct {
	Seq     int64  `json:"s"`
	UserID  int64  `json:"u"`
	Version int64  `json:"v"`
	Op      string `json:"o"`
	NoteID  int64  `json:"i,omitempty"`
	Created int64  `json:"t"` // unix ms, as the change log keeps it
	ID      string `json:"h,omitempty"`
}

// encodeChanges encodes cs, all made on one node.
func encodeChanges(cs []app.Change) []byte {
	if len(cs) == 0 {
		return nil
	}
	out := sharedChanges{Node: cs[0].Node, Changes: make([]sharedChange, len(cs))}
	for i, c := range cs {
		out.Changes[i] = sharedChange{Seq: c.Seq, UserID: c.UserID, Version: c.Version, Op: c.Op, NoteID: c.NoteID, Created: c.CreatedAt.UnixMilli(), ID: c.ID}
	}
	b, _ := json.Marshal(out)
	return b
}

// decodeChanges reads what encodeChanges wrote, as ChangesAfter reads the
// same rows.
func decodeChanges(b []byte) ([]app.Change, error) {
	var in sharedChanges
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, err
	}
	cs := make([]app.Change, len(in.Changes))
	for i, c := range in.Changes {
		if i > 0 && c.Seq != cs[i-1].Seq+1 {
			return nil, errors.New("shared changes are not consecutive")
		}
		cs[i] = app.Change{Seq: c.Seq, ID: c.ID, UserID: c.UserID, Version: c.Version, Op: c.Op, NoteID: c.NoteID, Node: in.Node, CreatedAt: time.UnixMilli(c.Created)}
	}
	return cs, nil
}
