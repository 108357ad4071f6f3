package protocol

import (
	"errors"
	"io/fs"
	"os"
	"syscall"

	"github.com/tether-dev/tether/internal/policy"
)

// Magic opens every Hello, so an agent can tell a tether client from a
// stray connection (a health check, a port scanner) and say so.
const Magic = "tether"

// Capabilities this build implements. A peer only uses a feature when both
// sides list it.
const (
	CapEnv      = "env"
	CapHostname = "hostname"
	CapDialTCP  = "dial.tcp"
	CapDialUDP  = "dial.udp"
	CapFSRead   = "fs.read"
	CapFSWrite  = "fs.write"
	CapIncoming = "incoming"
	CapRPC      = "rpc"
)

// AllCapabilities is what this build offers.
var AllCapabilities = []string{CapEnv, CapHostname, CapDialTCP, CapDialUDP, CapFSRead, CapFSWrite, CapIncoming, CapRPC}

// Hello is the client's first frame on a new connection.
type Hello struct {
	Magic        string   `json:"magic"`
	Version      int      `json:"version"`
	MinVersion   int      `json:"min_version"`
	Capabilities []string `json:"capabilities,omitempty"`
	// SessionID resumes an existing session when set; empty asks for a new one.
	SessionID string `json:"session_id,omitempty"`
	// Client describes the client build and user, for the agent's logs.
	Client string `json:"client,omitempty"`
	// Token must match the agent's token when it has one.
	Token string `json:"token,omitempty"`
	// Target names the container whose context the session wants, as in
	// its pod's status (containerd://ID), for an agent that serves the
	// containers of its node; empty: the agent's own target.
	Target string `json:"target,omitempty"`
	// Run names the client's run (one tether exec): the sessions it opens
	// on the agents of a workload's replicas share it, so that they are
	// listed and ended as one.
	Run string `json:"run,omitempty"`
	// Grant is set by tether-operator on a session it proxies (see
	// Grant); an agent never takes it from anyone without its token.
	Grant *Grant `json:"grant,omitempty"`
	// Admin asks for the agent's admin channel (AdminRequest frames)
	// instead of a session: tether-operator lists and ends sessions on it.
	Admin bool `json:"admin,omitempty"`
}

// Welcome is the agent's answer to Hello. Error set means the agent refused
// the connection (and closes it); it is written for a human.
type Welcome struct {
	Version      int      `json:"version"`
	Capabilities []string `json:"capabilities,omitempty"`
	SessionID    string   `json:"session_id,omitempty"`
	// Resumed is true when Hello.SessionID named a session the agent still
	// kept: its subscriptions are intact. False after a reconnect means a
	// new session: the client must subscribe again.
	Resumed bool   `json:"resumed,omitempty"`
	Error   string `json:"error,omitempty"`
	// Final, with Error, means retrying cannot help: the session was
	// ended for good (by an administrator), the client must stop.
	Final bool `json:"final,omitempty"`
	// Target describes what the agent is attached to.
	Target TargetInfo `json:"target"`
	// Policies are the rules the agent enforces on the session (the
	// operator's grant): the client says what they refuse, and keeps the
	// paths of fs.local on the developer's machine.
	Policies []policy.Rules `json:"policies,omitempty"`
}

// TargetInfo describes the target process the agent serves.
type TargetInfo struct {
	PID      int    `json:"pid"`
	Hostname string `json:"hostname,omitempty"`
	Agent    string `json:"agent,omitempty"` // agent build version
}

// Ops carried in Request.Op.
const (
	OpEnv      = "env"
	OpHostname = "hostname"
	OpDial     = "dial"
	OpStat     = "stat"
	OpRead     = "read"
	OpReadDir  = "readdir"
	OpReadlink = "readlink"
	OpWrite    = "write"
	OpMkdir    = "mkdir"
	OpRemove   = "remove"
	OpRename   = "rename"
	// OpSetAttr changes a file's mode, owner, times or size (Attr);
	// OpSymlink makes Path a symlink to Target; OpLink makes NewPath a hard
	// link to Path.
	OpSetAttr = "setattr"
	OpSymlink = "symlink"
	OpLink    = "link"
	// OpSubscribe asks for a port's incoming traffic (Port, Mode, Filter);
	// OpUnsubscribe gives it back. The agent delivers traffic on streams it
	// opens, each starting with an Incoming frame.
	OpSubscribe   = "subscribe"
	OpUnsubscribe = "unsubscribe"
	// OpRPC turns the stream into a call channel: RPCCall frames one way,
	// RPCReply frames back (in any order), for ops answered by one Response.
	OpRPC = "rpc"
	// OpClose ends the session now (no resumption grace period): the
	// client is done, its subscriptions go at once.
	OpClose = "close"
)

// StreamOnly reports whether op carries bytes after its frames and so
// needs a stream of its own (it cannot go over OpRPC).
func StreamOnly(op string) bool {
	switch op {
	case OpDial, OpRead, OpWrite, OpRPC:
		return true
	}
	return false
}

// RPCCall is one request on an OpRPC stream.
type RPCCall struct {
	ID  uint64  `json:"id"`
	Req Request `json:"req"`
}

// RPCReply answers the RPCCall with the same ID.
type RPCReply struct {
	ID   uint64   `json:"id"`
	Resp Response `json:"resp"`
}

// Incoming modes.
const (
	ModeMirror = "mirror"
	ModeSteal  = "steal"
)

// DefaultMirrorRate is the copies a second of a mirror subscription that
// does not say (Request.MirrorRate 0); config.DefaultMirrorRate is the
// same.
const DefaultMirrorRate = 1000

// Request is the first frame of every stream the client opens.
type Request struct {
	Op string `json:"op"`
	// Dial
	Network string `json:"network,omitempty"` // "tcp" or "udp"
	Addr    string `json:"addr,omitempty"`    // "ip:port"
	// Files
	Path     string `json:"path,omitempty"`
	NewPath  string `json:"new_path,omitempty"` // rename
	NoFollow bool   `json:"no_follow,omitempty"`
	Perm     uint32 `json:"perm,omitempty"`
	Size     int64  `json:"size,omitempty"`   // write: bytes that follow the frame
	Attr     *Attr  `json:"attr,omitempty"`   // setattr
	Target   string `json:"target,omitempty"` // symlink: the link's content
	// Incoming
	Port   uint16      `json:"port,omitempty"`
	Mode   string      `json:"mode,omitempty"`
	Filter *HTTPFilter `json:"filter,omitempty"`
	// MirrorRate bounds a mirror subscription's copies (requests per
	// second): 0 is DefaultMirrorRate (a client that does not say),
	// negative is no bound.
	MirrorRate int `json:"mirror_rate,omitempty"`
}

// Attr is what a setattr changes: each set field, nothing else.
type Attr struct {
	Mode *uint32 `json:"mode,omitempty"` // permission bits (chmod)
	// Uid, Gid: chown; -1 leaves that one unchanged.
	Uid *int64 `json:"uid,omitempty"`
	Gid *int64 `json:"gid,omitempty"`
	// Atime, Mtime in ns since the epoch; Now means the agent's clock.
	Atime    *int64 `json:"atime_ns,omitempty"`
	Mtime    *int64 `json:"mtime_ns,omitempty"`
	AtimeNow bool   `json:"atime_now,omitempty"`
	MtimeNow bool   `json:"mtime_now,omitempty"`
	Size     *int64 `json:"size,omitempty"` // truncate
}

// HTTPFilter is incoming.http_filter on the wire (regexes).
type HTTPFilter struct {
	Header string      `json:"header,omitempty"`
	Path   string      `json:"path,omitempty"`
	Method string      `json:"method,omitempty"`
	AllOf  []HTTPMatch `json:"all_of,omitempty"`
	AnyOf  []HTTPMatch `json:"any_of,omitempty"`
}

// HTTPMatch is one element of HTTPFilter.AllOf / AnyOf.
type HTTPMatch struct {
	Header string `json:"header,omitempty"`
	Path   string `json:"path,omitempty"`
	Method string `json:"method,omitempty"`
}

// Incoming is the first frame of a stream the agent opens to deliver
// traffic: a whole connection (steal, or a mirror copy), or one HTTP
// connection's worth of stolen requests. Raw bytes follow.
type Incoming struct {
	Port   uint16 `json:"port"`             // the target's port the traffic was sent to
	Client string `json:"client"`           // original client address (ip:port)
	Dst    string `json:"dst,omitempty"`    // original destination (ip:port)
	Mirror bool   `json:"mirror,omitempty"` // a copy: replies are discarded
	// Notice, when set, is a message for the user and the stream carries
	// nothing else (e.g. a request matched this session's filter and an
	// earlier session's).
	Notice string `json:"notice,omitempty"`
	// Ended, when set, says the session has been ended for good (by an
	// administrator) and why; the stream carries nothing else and the
	// agent closes the connection.
	Ended string `json:"ended,omitempty"`
}

// Response is the first frame the agent writes back on a stream.
type Response struct {
	// Errno is the Linux errno of a failure (0 = success); Error is the
	// human text. The supervisor returns Errno to the local syscall.
	Errno int    `json:"errno,omitempty"`
	Error string `json:"error,omitempty"`

	Env      []string   `json:"env,omitempty"`
	Hostname string     `json:"hostname,omitempty"`
	Stat     *Stat      `json:"stat,omitempty"`
	Entries  []DirEntry `json:"entries,omitempty"`
	Target   string     `json:"target,omitempty"` // readlink
	// LocalAddr is the address of the agent's socket after a dial (in the target's netns).
	LocalAddr string `json:"local_addr,omitempty"`
	// Warnings are things the user should know that did not stop the request
	// (a subscription whose filter overlaps an earlier one).
	Warnings []string `json:"warnings,omitempty"`
	// Refused says which policies refused the request (with Errno) or
	// part of it (variables of OpEnv left out or masked), by which rule.
	Refused []policy.Refusal `json:"refused,omitempty"`
}

// Stat is a file's metadata as the target sees it.
type Stat struct {
	Mode    uint32 `json:"mode"` // st_mode: type and permission bits
	Size    int64  `json:"size"`
	Uid     uint32 `json:"uid"`
	Gid     uint32 `json:"gid"`
	Nlink   uint64 `json:"nlink"`
	Ino     uint64 `json:"ino"`
	Dev     uint64 `json:"dev"`
	Rdev    uint64 `json:"rdev,omitempty"`
	Blksize int64  `json:"blksize"`
	Blocks  int64  `json:"blocks"`
	Atime   int64  `json:"atime_ns"`
	Mtime   int64  `json:"mtime_ns"`
	Ctime   int64  `json:"ctime_ns"`
}

// DirEntry is one name in a remote directory.
type DirEntry struct {
	Name string `json:"name"`
	Mode uint32 `json:"mode"` // type bits of st_mode (S_IFDIR, S_IFREG, ...)
}

// Err turns a failed Response into a Go error that carries its errno.
func (r *Response) Err() error {
	if r.Errno == 0 && r.Error == "" {
		return nil
	}
	return &RemoteError{Errno: syscall.Errno(r.Errno), Msg: r.Error}
}

// RemoteError is a failure reported by the agent.
type RemoteError struct {
	Errno syscall.Errno
	Msg   string
}

func (e *RemoteError) Error() string {
	if e.Msg != "" {
		return "agent: " + e.Msg
	}
	return "agent: " + e.Errno.Error()
}

// Unwrap lets errors.Is(err, fs.ErrNotExist) and errors.Is(err, syscall.ENOENT) work.
func (e *RemoteError) Unwrap() error { return e.Errno }

// ErrorResponse builds a failed Response from err, keeping its errno when
// it has one (EIO otherwise).
func ErrorResponse(err error) Response {
	resp := Response{Errno: int(ErrnoOf(err)), Error: err.Error()}
	var r *policy.Refusal
	if errors.As(err, &r) {
		resp.Refused = []policy.Refusal{*r}
	}
	return resp
}

// ErrnoOf extracts the errno from err: syscall errors as they are, common
// io/fs sentinels mapped, EIO for anything else.
func ErrnoOf(err error) syscall.Errno {
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, fs.ErrPermission):
		return syscall.EACCES
	case errors.Is(err, fs.ErrExist):
		return syscall.EEXIST
	case errors.Is(err, os.ErrDeadlineExceeded):
		return syscall.ETIMEDOUT
	}
	// os.Root reports escapes with a plain error; the kernel would say EXDEV
	// for RESOLVE_BENEATH. Keep EIO as the honest default.
	return syscall.EIO
}

// Intersect returns the capabilities both lists contain, in a's order.
func Intersect(a, b []string) []string {
	set := make(map[string]bool, len(b))
	for _, c := range b {
		set[c] = true
	}
	var out []string
	for _, c := range a {
		if set[c] {
			out = append(out, c)
		}
	}
	return out
}
