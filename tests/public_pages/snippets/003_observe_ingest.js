fetch('https://observe.tansohq.com/api/events/ingest', {
method: 'POST',
headers: {
'Authorization': `Bearer ${process.env.OBSERVE_API_KEY}`,
'Content-Type': 'application/json',
},
body: JSON.stringify({
events: [{
eventName: 'chat',
customerReferenceId: user.id,
featureKey: 'ai_chat',
model: 'gpt-4o-mini',
modelProvider: 'openai',
inputTokens: res.usage?.prompt_tokens,
outputTokens: res.usage?.completion_tokens,
}],
}),
}).catch(console.error)
