"""Pure domain: statuses, transitions, errors and DTOs. No I/O, no Qt."""
