//! Alert state and the notification outbox (being written).
