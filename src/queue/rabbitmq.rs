//! RabbitMQ backend (lapin). Being written.
