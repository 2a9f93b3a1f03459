//! Max-Win-Win Coach (销售参谋): the coaching core and the `maxwin` daemon.
//!
//! A message flows through the layers in this order:
//!
//! - [`corpus`] loads the Markdown knowledge base from `corpus/`.
//! - [`retrieval`] indexes its passages and finds the ones that fit a message.
//! - [`llm`] talks to an OpenAI-compatible chat API with streaming.
//! - [`coach`] turns a message into a Q&A card (or a library card without an LLM).
//! - [`store`] keeps users, conversations, turns and dedupe keys in SQLite or PostgreSQL.
//! - [`server`] hosts the platform adapters behind the router, plus health and metrics.
//! - [`cli`] is the `maxwin` command line.

pub mod app;
pub mod cli;
pub mod coach;
pub mod config;
pub mod corpus;
pub mod eval;
pub mod llm;
pub mod retrieval;
pub mod server;
pub mod store;
pub mod telemetry;
