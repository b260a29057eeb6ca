package disbursementapi

import "github.com/eva-org/eva/pkg/assist"

// Acting (rpc.Acting): the commands that act for a user name their actor,
// which the service accepts only as the gateway signed it.

func (r CreateFundRequest) Acting() (string, assist.Actor) { return r.CommandID, r.Actor }

func (r CreatePayeeRequest) Acting() (string, assist.Actor) { return r.CommandID, r.Actor }

func (r ChangeAccountRequest) Acting() (string, assist.Actor) { return r.CommandID, r.Actor }

func (r PayoutCommand) Acting() (string, assist.Actor) { return r.CommandID, r.Actor }

func (r ChangeAllocationRequest) Acting() (string, assist.Actor) { return r.CommandID, r.Actor }
