package intakeapi

import "github.com/eva-org/eva/pkg/assist"

// Acting (rpc.Acting): the commands that act for a user name their actor,
// which the service accepts only as the gateway signed it.

func (r FileRequest) Acting() (string, assist.Actor) { return r.CommandID, r.Actor }

func (r AmendRequest) Acting() (string, assist.Actor) { return r.CommandID, r.Actor }

func (r WithdrawRequest) Acting() (string, assist.Actor) { return r.CommandID, r.Actor }

func (r AnswerRequest) Acting() (string, assist.Actor) { return r.CommandID, r.Actor }

func (r PersonalRequest) Acting() (string, assist.Actor) { return "", r.Actor }

func (r EraseRequest) Acting() (string, assist.Actor) { return r.CommandID, r.Actor }
