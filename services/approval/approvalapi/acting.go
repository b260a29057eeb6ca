package approvalapi

import "github.com/eva-org/eva/pkg/assist"

// Acting (rpc.Acting): the commands that act for a user name their actor,
// which the service accepts only as the gateway signed it.

func (r CaseCommand) Acting() (string, assist.Actor) { return r.CommandID, r.Actor }

func (r ApproveRequest) Acting() (string, assist.Actor) { return r.CommandID, r.Actor }

func (r RejectRequest) Acting() (string, assist.Actor) { return r.CommandID, r.Actor }

func (r RequestInfoRequest) Acting() (string, assist.Actor) { return r.CommandID, r.Actor }

func (r ChangePolicyRequest) Acting() (string, assist.Actor) { return r.CommandID, r.Actor }
