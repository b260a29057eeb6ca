package assist_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/eva-org/eva/pkg/assist"
)

func TestProblems(t *testing.T) {
	var p assist.Problems
	if err := p.Err(); err != nil {
		t.Fatalf("empty Problems: %v", err)
	}
	p.Add("amount_usd_cents", "must be at most %d", 5)
	p.Add("category", "is required")
	err := p.Err()
	e := wantCode(t, err, assist.CodeInvalid)
	want := []assist.FieldError{{Field: "amount_usd_cents", Message: "must be at most 5"}, {Field: "category", Message: "is required"}}
	if !reflect.DeepEqual(e.Fields, want) {
		t.Fatalf("fields %+v, want %+v", e.Fields, want)
	}
	if e.Message != "invalid amount_usd_cents, category" {
		t.Fatalf("message %q", e.Message)
	}
	if got := err.Error(); got != "invalid: invalid amount_usd_cents, category (amount_usd_cents: must be at most 5; category: is required)" {
		t.Fatalf("Error() = %q", got)
	}
}

func TestErrorWithoutFields(t *testing.T) {
	err := assist.Errorf(assist.CodeConflict, "claimed by %s", "bob")
	if got := err.Error(); got != "conflict: claimed by bob" {
		t.Fatalf("Error() = %q", got)
	}
}

func TestErrorCode(t *testing.T) {
	conflict := assist.Errorf(assist.CodeConflict, "taken")
	tests := []struct {
		name string
		err  error
		want assist.Code
	}{
		{"bare", conflict, assist.CodeConflict},
		{"wrapped", fmt.Errorf("approve %s: %w", caseID, conflict), assist.CodeConflict},
		{"wrapped twice", fmt.Errorf("b: %w", fmt.Errorf("a: %w", assist.Errorf(assist.CodeForbidden, "no"))), assist.CodeForbidden},
		{"joined", errors.Join(errors.New("other"), assist.Errorf(assist.CodeNotFound, "gone")), assist.CodeNotFound},
		{"foreign", errors.New("disk on fire"), assist.CodeInternal},
		{"foreign wrapped", fmt.Errorf("x: %w", errors.New("y")), assist.CodeInternal},
		{"nil", nil, assist.CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := assist.ErrorCode(tt.err); got != tt.want {
				t.Fatalf("ErrorCode = %s, want %s", got, tt.want)
			}
			if tt.err != nil && !assist.IsCode(tt.err, tt.want) {
				t.Fatalf("IsCode(%v, %s) = false", tt.err, tt.want)
			}
			if assist.IsCode(tt.err, assist.CodeRateLimited) {
				t.Fatalf("IsCode(%v, rate_limited) = true", tt.err)
			}
		})
	}
	if assist.IsCode(nil, assist.CodeInternal) {
		t.Fatal("IsCode(nil, internal) = true")
	}
}

// Field errors survive wrapping, so an edge can still name the field.
func TestFieldsThroughWrapping(t *testing.T) {
	_, err := assist.Submit(assist.Cmd{ID: caseID, Actor: filer, At: t0}, assist.SubmitInput{Post: "KYIV"}, assist.DefaultPolicy())
	wrapped := fmt.Errorf("submit: %w", err)
	var e *assist.Error
	if !errors.As(wrapped, &e) || len(e.Fields) == 0 || !assist.IsCode(wrapped, assist.CodeInvalid) {
		t.Fatalf("lost through wrapping: %v", wrapped)
	}
}
