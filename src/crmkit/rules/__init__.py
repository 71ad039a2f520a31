"""Life-cycle rules that ship inside crmkit."""
